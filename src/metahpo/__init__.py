"""metahpo: reproducible meta-hyperparameter optimisation for MAML-family meta-learners."""

__version__ = "0.1.0"
