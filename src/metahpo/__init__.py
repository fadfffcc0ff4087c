"""metahpo: reproducible meta-hyperparameter optimisation for MAML-family meta-learners.

The pipeline runs as DVC stages (``dvc repro``); this package's top level is the same code for a notebook:
a learner, meta-trained on sinusoid tasks, and the results of a finished run.

Example:
    >>> import torch
    >>> from metahpo import LearnerConfig, TrainSettings, build_learner, meta_train, sinusoid_pool
    >>> pool = sinusoid_pool(n_tasks=100, points=20, seed=0)
    >>> learner = build_learner(LearnerConfig("maml", hidden=40, layers=2, inner_lr=0.01, inner_steps=1), 0, "cpu")
    >>> batch = pool.sample(25, 10, 10, torch.Generator().manual_seed(1))  # support x, y and query x, y
    >>> before = learner.meta_loss(*batch).item()
    >>> settings = TrainSettings(iterations=100, meta_batch_size=10, outer_lr=1e-3, outer_schedule="constant",
    ...                          shots=10, query=10)
    >>> state = meta_train(learner, pool, settings, seed=0)
    >>> learner.meta_loss(*batch).item() < before
    True

The names load on first use, so that a pipeline stage, which imports one module of the package, does not
import them all (and its DVC deps stay the modules it runs).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name: the module that defines it.
_PUBLIC = {
    # Learners: the algorithms, a learner's config, building one, meta-training it.
    "ALGORITHMS": "metahpo.learners",
    "LearnerConfig": "metahpo.learners.meta_learner",
    "MetaLearner": "metahpo.learners.meta_learner",
    "TrainSettings": "metahpo.learners.metatrain",
    "build_learner": "metahpo.learners.metatrain",
    "meta_train": "metahpo.learners.metatrain",
    # Tasks: sinusoid regression tasks to meta-train on.
    "TaskPool": "metahpo.tasks.sinusoid",
    "sinusoid_pool": "metahpo.tasks.sinusoid",
    # The search as a function: `minimize` (metahpo.search) is added here with the search's library API.
    # A finished run's results.
    "Run": "metahpo.reporting.runs",
    "load_run": "metahpo.reporting.runs",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'metahpo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
