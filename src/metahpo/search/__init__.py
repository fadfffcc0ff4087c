"""Meta-hyperparameter search: proposers, trials, their durable log, class folds, and the search loop."""

METHODS = ("gp", "forest", "random", "grid")
ACQ_FUNCS = ("EI", "PI", "LCB", "gp_hedge")
EXECUTORS = ("local", "dask")
PRIORS = ("uniform", "log-uniform")
OBJECTIVES = ("loss", "accuracy")
FIDELITIES = ("none", "successive_halving", "hyperband")
FIDELITY_UNITS = ("iterations", "compute")


def __getattr__(name: str):
    """``metahpo.search.minimize`` (and its result type), imported on first use: the constants above stay light."""
    if name in ("minimize", "SearchResult"):
        from metahpo.search import multifidelity

        return getattr(multifidelity, name)
    raise AttributeError(f"module 'metahpo.search' has no attribute {name!r}")
