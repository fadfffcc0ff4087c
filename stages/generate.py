"""DVC stage `generate`: sinusoid task splits for meta_train, meta_val and meta_test."""

from metahpo.runtime import run_stage
from metahpo.tasks import generate_stage

if __name__ == "__main__":
    run_stage("generate", generate_stage, uses_torch=False)
