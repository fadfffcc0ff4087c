"""The evaluate stage's handling of learners: a twin (same config and weights) is scored once; each family's
module is found through one registry per layer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from metahpo.evaluation import protocol
from metahpo.evaluation.panels import PANELS
from metahpo.evaluation.protocol import each_once, twins
from metahpo.learners.family import FAMILIES, ByProblem
from metahpo.learners.meta_learner import LearnerConfig
from metahpo.learners.metatrain import build_learner
from metahpo.reporting import report

CPU = torch.device("cpu")
CONFIG = LearnerConfig("maml", 8, 2, 0.01, 1)


def test_only_equal_configs_and_weights_are_twins():
    learners = {
        "tuned": build_learner(CONFIG, 0, CPU),
        "default": build_learner(CONFIG, 0, CPU),  # the same setting and seed: the same weights
        "other_seed": build_learner(CONFIG, 1, CPU),
        "other_rate": build_learner(dataclasses.replace(CONFIG, inner_lr=0.02), 0, CPU),
    }
    assert twins(learners) == {"default": "tuned"}
    with torch.no_grad():
        next(learners["default"].parameters()).add_(1e-6)
    assert twins(learners) == {}


def test_a_twin_reuses_the_score_of_the_learner_it_equals():
    learners = {name: build_learner(CONFIG, seed, CPU) for name, seed in (("tuned", 0), ("default", 0), ("x", 1))}
    calls = []

    def score_all(names):
        calls.append(names)
        return {name: {"n": i} for i, name in enumerate(names)}

    scored = each_once(learners, score_all)
    assert scored == {"tuned": {"n": 0}, "default": {"n": 0}, "x": {"n": 1}}
    assert list(scored) == ["tuned", "default", "x"] and calls == [["tuned", "x"]]


def test_a_scoring_worker_s_result_is_refused_unless_it_is_plain_data():
    import numpy as np

    from metahpo.evaluation.protocol import checked_scores
    from metahpo.executors import RefusedResult

    good = ({"test": {"k10": {"step1": {"mse": 0.1, "ci95": None}}}}, {"curve": {"step": [0, 1, 2], "mse": (0.1,)}})
    assert checked_scores("tuned", good) is good
    # score_job hands back Python lists and numbers only: numpy arrays and integers are refused (np.float64 is a float)
    for bad in (None, [good[0], good[1]], (good[0],), ({"x": object()}, {}), ({1: 0.1}, {}),
                ({}, {"a": np.array([1.0])}), ({"n": np.int64(1)}, {})):  # fmt: skip
        with pytest.raises(RefusedResult, match="the worker scoring tuned handed back no"):
            checked_scores("tuned", bad)


def test_a_step_far_above_the_error_before_adapting_is_diverged_not_a_huge_mean():
    import numpy as np

    from metahpo.evaluation.regression import DIVERGED_FACTOR, _stats

    before = np.full(50, 2.0)
    errors = [before, before / 4, before * (DIVERGED_FACTOR + 1), np.full(50, np.inf), before * DIVERGED_FACTOR]
    stats = _stats(errors)
    assert [s["mse"] for s in stats] == [2.0, 0.5, None, None, 2.0 * DIVERGED_FACTOR]
    assert stats[2]["ci95"] is None and stats[1]["ci95"] == 0.0


def test_the_headline_writes_divergence_out_and_keeps_its_keys():
    from metahpo.evaluation.headline import headline

    def learner(trained, at_trained):
        per_k = {"k10": {"step1": {"mse": 0.3, "ci95": 0.01}, f"step{trained}": at_trained,
                         "step10": {"mse": None, "ci95": None}},
                 "k5": {"step1": {"mse": 0.6, "ci95": 0.02}}}  # fmt: skip
        ood = {"k10": {f"step{trained}": {"mse": 1.5, "ci95": 0.1}}}
        return {"inner_steps": trained, "test": {"grid": per_k}, "ood": {"grid": ood}}

    limit = {"test": {"grid": {"k5": {"mse": 0.0, "ci95": 0.0}, "k10": {"mse": 0.0, "ci95": 0.0}}},
             "ood": {"grid": {"k10": {"mse": 0.0, "ci95": 0.0}}}, "method": "not a learner"}  # fmt: skip
    metrics = {"tuned": learner(1, {"mse": 0.3, "ci95": 0.01}), "default": learner(2, {"mse": 0.2, "ci95": 0.02}),
               "limit": limit}  # fmt: skip
    means, cis = headline(metrics, ("tuned", "default"), 10, [5, 10], 10)
    keys = {"k5", "k10", "trained_steps", "steps10", "ood"}
    assert set(means["tuned"]) == set(means["default"]) == keys and set(means["limit"]) == {"k5", "k10", "ood"}
    assert means["tuned"]["steps10"] == cis["tuned"]["steps10_ci95"] == "diverged"
    assert (means["default"]["trained_steps"], cis["default"]["trained_steps_ci95"]) == (0.2, 0.02)
    assert list(means) == ["tuned", "default", "limit"]
    assert means["tuned"]["k5"] == 0.6 and means["default"]["ood"] == 1.5


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.problem)
def test_each_layer_finds_the_module_of_every_family_by_its_problem(family):
    evaluation, reporting = protocol.MODULES[family], report.MODULES[family]
    assert evaluation.__name__ == f"metahpo.evaluation.{family.problem}"
    assert reporting.__name__ == f"metahpo.reporting.{family.problem}"
    assert set(evaluation.PLOT_PANELS) <= set(PANELS) and evaluation.PLOT_METRICS


def test_a_layer_must_register_a_module_for_every_problem_and_no_other():
    with pytest.raises(ValueError, match="for each of regression, classification, got regression$"):
        ByProblem(regression=protocol)
    with pytest.raises(ValueError, match="got regression, classification, ranking"):
        ByProblem(regression=1, classification=2, ranking=3)
    assert ByProblem(classification="c", regression="r")[FAMILIES[1]] == "c"
