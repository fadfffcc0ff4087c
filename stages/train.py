"""DVC stage `train`: meta-train the tuned learner and the baselines with the full budget."""

from metahpo.runtime import run_stage
from metahpo.search.final_training import train_stage

if __name__ == "__main__":
    run_stage("train", train_stage)
