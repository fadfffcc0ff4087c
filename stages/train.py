"""DVC stage `train`: meta-train the tuned learner and the untuned baseline."""

from metahpo.runtime import run_stage
from metahpo.train import train_stage

if __name__ == "__main__":
    run_stage("train", train_stage)
