"""Meta-hyperparameter search: proposers, trials, their durable log, class folds, the search loop, and the final
training of what it found (the train stage)."""

METHODS = ("gp", "forest", "random", "grid")
ACQ_FUNCS = ("EI", "PI", "LCB", "gp_hedge")
EXECUTORS = ("local", "dask")
PRIORS = ("uniform", "log-uniform")
OBJECTIVES = ("loss", "accuracy")
FIDELITIES = ("none", "successive_halving", "hyperband")
FIDELITY_UNITS = ("iterations", "compute")
