"""Paired differences on the same held-out tasks: the statistic, the evaluation entry and the report's table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metahpo.evaluation import regression
from metahpo.evaluation.paired import PER_TASK, paired_difference, paired_section, split_per_task
from metahpo.learners.adaptation import summarize_accuracy
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.reporting.figures import LABELS
from metahpo.reporting.tables import NOT_PAIRED, paired_table

from conftest import load_default_params, shrink, typed


def test_the_paired_difference_of_a_small_sample():
    diff = paired_difference([1.0, 2.0, 3.0], [0.0, 2.0, 1.0])  # differences 1, 0, 2
    assert diff == {"mean": 1.0, "ci95": pytest.approx(1.96 / math.sqrt(3)), "larger": 2, "smaller": 0}


@pytest.mark.parametrize(
    "first, second",
    [
        (None, [1.0]),
        ([1.0], None),
        ([1.0, math.inf], [0.0, 0.0]),
        ([math.nan, 1.0], [0.0, 0.0]),
        ([], []),
        ([1.0], [0.5]),
    ],
)
def test_rows_without_finite_values_on_every_task_or_two_tasks_have_null_statistics(first, second):
    assert paired_difference(first, second) == {"mean": None, "ci95": None, "larger": None, "smaller": None}


@pytest.mark.parametrize("first, second", [([1.0, 2.0], [1.0]), ([[1.0]], [[1.0]])])
def test_values_of_different_tasks_are_refused(first, second):
    with pytest.raises(ValueError, match="one per task, the same tasks"):
        paired_difference(first, second)


def test_per_task_values_leave_the_entries_and_twins_share_theirs_untouched():
    shared = ({"inner_steps": 1, PER_TASK: [0.5, 1.0]}, {"curve": 1})
    results = {"tuned": shared, "default": shared, "floor": ({"method": "m", PER_TASK: [0.25, 0.5]}, {})}
    kept, per_task = split_per_task(results)
    assert kept["tuned"] == ({"inner_steps": 1}, {"curve": 1}) and PER_TASK in shared[0]  # twins' entry not mutated
    assert per_task == {"tuned": [0.5, 1.0], "default": [0.5, 1.0], "floor": [0.25, 0.5]}
    section = paired_section(per_task, list(kept))
    assert set(section) == {"default", "floor"}
    assert section["default"] == {"mean": 0.0, "ci95": 0.0, "larger": 0, "smaller": 0}  # a twin
    unscored = {name: {"method": "m", "test": {"query": {"k1": None}}} for name in kept}  # no own CIs to compare
    metrics = {"protocol": {"shots": 1}, "paired": section, **unscored}
    table = paired_table(metrics, ("tuned", "default"), ("floor", "floor"), "query", "accuracy",
                         lambda m, c: f"{m} {c}", True)  # fmt: skip
    assert f"| {LABELS['default']} | 0.0 0.0 |  | 0 / 0 | identical on every task |" in table
    assert section["floor"]["mean"] == pytest.approx(0.375) and section["floor"]["larger"] == 2


def _classification_metrics(values: dict[str, np.ndarray], steps: dict[str, int]) -> dict:
    """An ``evaluation.json`` of the shape the classification evaluation writes, for the rows of ``values``."""
    metrics = {"protocol": {"shots": 1}}
    for name, accuracy in values.items():
        stat = summarize_accuracy(accuracy)
        if name == "floor":
            metrics[name] = {"method": "m", "test": {"query": {"k1": stat}}}
        else:
            metrics[name] = {"inner_steps": steps[name], "test": {"query": {"k1": {f"step{steps[name]}": stat}}}}
    metrics["paired"] = paired_section({n: v.tolist() for n, v in values.items()}, list(values))
    return metrics


def test_the_paired_ci_separates_learners_whose_own_cis_overlap():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.5, 1.0, 400)  # what every learner finds hard or easy
    values = {
        "tuned": difficulty + 0.01 + rng.normal(0, 0.005, 400),
        "default": difficulty + rng.normal(0, 0.005, 400),
        "protonet": difficulty + 0.01 + rng.normal(0, 0.005, 400),
        "floor": difficulty - 0.3,
    }
    metrics = _classification_metrics(values, {"tuned": 1, "default": 1, "protonet": 0})
    rows = ("tuned", "default", "protonet"), ("floor", "floor")
    lines = paired_table(metrics, *rows, "query", "accuracy", lambda m, c: f"{m:+.4f} ± {c:.4f}", True).splitlines()
    by_name = dict(zip(("default", "protonet", "floor"), lines[2:]))
    assert by_name["default"].startswith(f"| {LABELS['default']} |")
    assert "| yes |" in by_name["default"] and "**tuned better**" in by_name["default"]  # own CIs overlap
    assert "not separated" in by_name["protonet"] and "| yes |" in by_name["protonet"]
    floor = by_name["floor"]
    assert floor.startswith("| floor |") and "| no |" in floor
    assert "**tuned better**" in floor and "| 400 / 0 |" in floor
    lower = paired_table(metrics, *rows, "query", "accuracy", lambda m, c: f"{m} {c}", higher_is_better=False)
    assert "**tuned worse**" in lower  # for an error, a larger value is worse


def test_a_row_without_finite_values_is_named_not_measured():
    values = {"tuned": np.array([0.5, 1.0]), "default": np.array([0.5, 0.5]), "floor": np.array([0.25, 0.5])}
    metrics = _classification_metrics(values, {"tuned": 1, "default": 1})
    metrics["paired"]["default"] = paired_difference(None, None)
    table = paired_table(metrics, ("tuned", "default"), ("floor", "floor"), "query", "accuracy",
                         lambda m, c: f"{m} {c}", True)  # fmt: skip
    assert f"| {LABELS['default']} | {NOT_PAIRED} | yes |" in table


def _sinusoid_split(tasks: int = 6, shots: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    amplitude, phase = rng.uniform(0.5, 4, (tasks, 1, 1)), rng.uniform(0, 3, (tasks, 1, 1))
    support_x, query_x = rng.uniform(-5, 5, (tasks, shots, 1)), rng.uniform(-5, 5, (tasks, shots, 1))
    grid_x = np.linspace(-5, 5, 20)[:, None]
    split = {
        "support_x": support_x,
        "support_y": amplitude * np.sin(support_x - phase),
        "query_x": query_x,
        "query_y": amplitude * np.sin(query_x - phase),
        "grid_x": grid_x,
        "grid_y": amplitude * np.sin(grid_x[None] - phase),
    }
    return {k: v.astype(np.float32) for k, v in split.items()}


@pytest.mark.parametrize("trained, max_steps", [(2, 3), (3, 1)])
def test_a_learner_hands_back_its_headline_per_task_values_only_when_evaluated_at_its_trained_steps(trained, max_steps):
    raw = shrink(load_default_params())
    raw["tasks"].update(shots=5, eval_shots=[5])
    raw["evaluate"]["max_steps"] = raw["train"]["finetune"]["max_steps"] = max_steps
    learner = MetaLearner(LearnerConfig("maml", 16, 2, 0.05, trained), torch.Generator().manual_seed(1))
    splits = {"test": _sinusoid_split(), "ood": _sinusoid_split(seed=1)}
    steps = [s for s in (0, 1, trained) if s <= max_steps]
    entry, _ = regression.learner_results(learner, splits, typed(raw), steps, torch.device("cpu"))
    if trained > max_steps:
        assert PER_TASK not in entry  # the headline has no value there either
    else:
        values = np.asarray(entry[PER_TASK])
        assert values.shape == (6,) and values.mean() == pytest.approx(entry["test"]["grid"]["k5"]["step2"]["mse"])
