"""The evaluate stage's handling of learners: a twin (same config and weights) is scored once."""

from __future__ import annotations

import dataclasses

import torch

from metahpo.evaluation.protocol import each_once, twins
from metahpo.learners.meta_learner import LearnerConfig
from metahpo.learners.metatrain import build_learner

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

    def score(learner):
        calls.append(learner)
        return {"n": len(calls)}

    scored = dict(each_once(learners, score))
    assert scored == {"tuned": {"n": 1}, "default": {"n": 1}, "x": {"n": 2}}
    assert calls == [learners["tuned"], learners["x"]]
