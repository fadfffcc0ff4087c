"""DVC stage `generate`: the task splits meta_train, meta_val, meta_test (and meta_ood) under data/tasks."""

from metahpo.runtime import run_stage
from metahpo.tasks.generate import generate_stage

if __name__ == "__main__":
    run_stage("generate", generate_stage, uses_torch=False)
