"""DVC stage `generate`: the task splits meta_train, meta_val, meta_test (and meta_ood) under data/tasks."""

import metahpo.search  # noqa: F401  (the learners' and the search's names: every stage checks the whole params file)
from metahpo.runtime import run_stage
from metahpo.tasks.generate import generate_stage

if __name__ == "__main__":
    run_stage("generate", generate_stage, uses_torch=False)
