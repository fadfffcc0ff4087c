"""Meta-hyperparameter search: proposers, trials, their durable log, class folds, the search loop, and the final
training of what it found (the train stage)."""

import importlib

from metahpo.params import PRIORS  # noqa: F401  (part of the schema; named here with the others)

METHODS = ("gp", "forest", "random", "grid", "tpe")
ACQ_FUNCS = ("EI", "PI", "LCB", "gp_hedge")
EXECUTORS = ("local", "dask")
OBJECTIVES = ("loss", "accuracy")
FIDELITIES = ("none", "successive_halving", "hyperband", "asha")
# The methods the search library (metahpo.search.multifidelity) runs: search.fidelity: asha takes one of them.
LIBRARY_METHODS = ("gp", "tpe", "random")
FIDELITY_UNITS = ("iterations", "compute")


def runs_library(search) -> bool:
    """Whether the search stage runs the search library (``search.fidelity: asha`` or ``search.method: tpe``)."""
    return search.fidelity == "asha" or search.method == "tpe"


def __getattr__(name: str):
    """``metahpo.search.minimize`` (and its result type), imported on first use: the constants above stay light."""
    if name in ("minimize", "SearchResult"):
        # Imported by name, not by an import statement: the stages that import this package but not the
        # search (train, report) do not depend on the library in dvc.yaml (see metahpo.sources).
        return getattr(importlib.import_module("metahpo.search.multifidelity"), name)
    raise AttributeError(f"module 'metahpo.search' has no attribute {name!r}")


# The names above and the learners' are registered with the params schema (core), with the rules that read them.
from metahpo.search import params_rules  # noqa: E402, F401
