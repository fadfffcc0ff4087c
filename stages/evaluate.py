"""DVC stage `evaluate`: held-out evaluation protocol on meta_test."""

from metahpo.evaluate import evaluate_stage
from metahpo.runtime import run_stage

if __name__ == "__main__":
    run_stage("evaluate", evaluate_stage)
