"""Shared fixtures: the project's own params.yaml shrunk to tiny settings."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import metahpo.search  # noqa: F401  (registers the learners' and the search's names with the params schema)
from metahpo.learners import ARCHITECTURES
from metahpo.learners.algorithms.registry import algorithm
from metahpo.params import Params, TaskParams, read_params_file

ROOT = Path(__file__).resolve().parents[1]

# What the tiny settings search: the learner kind and two numbers. The default's nine dimensions make the GP and
# the report's partial-dependence grids most of a tiny run; the main end-to-end project keeps them.
TINY_SPACE = ("algorithm", "inner_lr", "hidden")


def runs_on_every_task(name: str) -> bool:
    """Whether learner ``name`` runs on regression and classification, on every architecture."""
    entry = algorithm(name)
    return set(entry.losses) == {"mse", "cross_entropy"} and set(entry.architectures) == set(ARCHITECTURES)


def load_default_params() -> dict:
    """The committed params.yaml, read as DVC and the stages read it."""
    return read_params_file(ROOT / "params.yaml")


def shrink(params: dict) -> dict:
    """A copy of ``params`` small enough for a pipeline run of a few seconds per stage."""
    tiny = copy.deepcopy(params)
    tiny["tasks"]["splits"] = {"meta_train": 100, "meta_val": 12, "meta_test": 16, "meta_ood": 10}
    tiny["tasks"]["train_points"] = 24
    # rungs, the cost cap and the stability guard: their own tests (the guard fails trials whose random inner
    # rate diverges by step 10, and the pipeline tests count on every trial finishing)
    tiny["search"].update(n_calls=3, n_initial_points=2, iterations=15, fidelity="none", max_cost=None, stable_steps=0)
    tiny["search"]["space"] = {name: dim for name, dim in tiny["search"]["space"].items() if name in TINY_SPACE}
    # Tests switch these params to images and the conv net: keep the learners that run there too (the proximal
    # head is regression only; its own end-to-end test searches it).
    kinds = tiny["search"]["space"]["algorithm"]
    kinds["values"] = [name for name in kinds["values"] if runs_on_every_task(name)]
    # one process: a pool's spawned workers each import torch, which takes longer than a tiny stage's work
    tiny["search"]["workers"] = 1
    tiny["train"].update(iterations=20, log_every=10, workers=1)
    tiny["evaluate"].update(max_steps=3)
    tiny["train"]["finetune"].update(lr_points=4, max_steps=3)
    tiny["device"] = "cpu"
    return tiny


def typed(params: dict) -> Params:
    """Validated, typed params from a (test-edited) dictionary; an invalid one fails the test with every problem."""
    return Params.from_dict(params)


# Small N-way settings for the image tests (a digits-like family; the class splits of params.yaml).
IMAGE_TASKS = {
    "family": "digits",
    "ways": 5,
    "shots": 1,
    "query": 3,
    "eval_shots": [1, 4],
    "splits": {"meta_val": 7, "meta_test": 9},
}


def task_params(**changes) -> TaskParams:
    """The tiny ``tasks`` section with :data:`IMAGE_TASKS` and ``changes`` (mappings are merged)."""
    params = shrink(load_default_params())
    tasks = params["tasks"]
    for key, value in {**IMAGE_TASKS, **changes}.items():
        tasks[key] = {**tasks[key], **value} if isinstance(value, dict) else value
    params["meta"]["query"] = min(params["meta"]["query"], tasks["query"])  # meta-training draws at most these
    return typed(params).tasks


class _Delete:
    """The marker of a key to delete (a fixed repr, so that test ids are the same in every process)."""

    def __repr__(self) -> str:
        return "<deleted>"


DELETE = _Delete()


def set_dotted(params: dict, dotted: str, value) -> None:
    """Set the key at a dotted path such as ``meta.inner_lr`` in place (``DELETE`` removes it)."""
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


@pytest.fixture
def tiny_params() -> dict:
    """Tiny settings derived from the committed params.yaml."""
    return shrink(load_default_params())


def pytest_collection_modifyitems(items):
    """Run the end-to-end tests first (a stable sort: files keep their order otherwise).

    With ``pytest -n auto --dist loadfile`` each file goes to the next free process in this order, so the long
    ``dvc repro`` files start at once and the short unit files fill the processes in at the end, instead of
    one long file running alone at the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def two_dimension_rungs(params: dict, fidelity: str) -> dict:
    """``params`` for a rung search over inner_lr and hidden: rungs of 100, 300 and 900 iterations, 20 trials."""
    params["search"].update(
        fidelity=fidelity, iterations=900, min_iterations=100, eta=3, n_calls=20, n_initial_points=5, workers=1
    )
    params["search"]["space"] = {
        "inner_lr": {"type": "real", "low": 0.001, "high": 1.0, "prior": "log-uniform"},
        "hidden": {"type": "integer", "low": 10, "high": 100, "prior": "uniform"},
    }
    return params
