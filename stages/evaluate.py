"""DVC stage `evaluate`: the held-out evaluation protocol on meta_test."""

import metahpo.search  # noqa: F401  (the learners' and the search's names: every stage checks the whole params file)
from metahpo.evaluation.protocol import evaluate_stage
from metahpo.runtime import run_stage

if __name__ == "__main__":
    run_stage("evaluate", evaluate_stage)
