"""DVC stage `search`: search over meta-hyperparameters, scored on meta_val."""

from metahpo.runtime import run_stage
from metahpo.search.driver import search_stage

if __name__ == "__main__":
    run_stage("search", search_stage)
