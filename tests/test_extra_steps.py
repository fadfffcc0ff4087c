"""Steps past a learner's trained ones: safeguarded (a task keeps a step only where its support loss does not
rise) or plain (the trained rule repeated)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from metahpo.errors import ArtifactError
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner, task_cross_entropy, task_mse


def _sinusoid_batch(tasks: int = 16, points: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    amplitude = 0.1 + 4.9 * torch.rand(tasks, 1, 1, generator=g, dtype=torch.float64)
    phase = 3.14 * torch.rand(tasks, 1, 1, generator=g, dtype=torch.float64)
    x = -5 + 10 * torch.rand(tasks, points, 1, generator=g, dtype=torch.float64)
    return x, amplitude * torch.sin(x - phase)


def _learner(algorithm: str, inner_lr: float, extra_steps: str, inner_steps: int = 1, **kw) -> MetaLearner:
    config = LearnerConfig(algorithm, 20, 2, inner_lr, inner_steps, extra_steps=extra_steps, **kw)
    return MetaLearner(config, torch.Generator().manual_seed(3)).double()


def _support_losses(learner: MetaLearner, x, y, steps: int) -> torch.Tensor:
    return torch.stack([task_mse(learner.predict(fast, x), y) for fast in learner.trajectory(x, y, steps)])


@pytest.mark.parametrize("algorithm", ["maml", "metasgd"])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_the_trained_steps_are_the_plain_rule_and_later_ones_never_raise_a_tasks_support_loss(algorithm, inner_steps):
    x, y = _sinusoid_batch()
    # A rate large enough that the plain rule overshoots on most tasks after its trained steps.
    plain = _support_losses(_learner(algorithm, 0.5, "plain", inner_steps), x, y, 8)
    guarded = _support_losses(_learner(algorithm, 0.5, "safeguarded", inner_steps), x, y, 8)
    assert torch.equal(plain[: inner_steps + 1], guarded[: inner_steps + 1])
    assert (guarded[inner_steps + 1 :] <= guarded[inner_steps:-1]).all()
    assert torch.isfinite(guarded).all()
    assert not torch.isfinite(plain[-1]).all() or (plain[-1] > guarded[-1]).any()  # the plain rule did overshoot


def test_a_rule_that_descends_is_left_alone():
    x, y = _sinusoid_batch()
    plain = _support_losses(_learner("maml", 0.001, "plain"), x, y, 5)
    guarded = _support_losses(_learner("maml", 0.001, "safeguarded"), x, y, 5)
    assert (plain[1:] < plain[:-1]).all()  # a small rate: every step lowers every task's loss
    assert torch.equal(plain, guarded)


def test_a_task_whose_step_is_refused_keeps_its_weights_then_takes_half_steps():
    x, y = _sinusoid_batch(tasks=4)
    learner = _learner("maml", 0.5, "safeguarded")
    trajectory = list(learner.trajectory(x, y, 3))
    losses = [task_mse(learner.predict(f, x), y) for f in trajectory]
    plain_learner = _learner("maml", 0.5, "plain")
    refused = task_mse(plain_learner.predict(list(plain_learner.trajectory(x, y, 2))[2], x), y) > losses[1]
    assert refused.any()
    for name in learner.adapted:
        assert torch.equal(trajectory[2][name][refused], trajectory[1][name][refused])


def test_classification_uses_the_support_cross_entropy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 10, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(5).repeat(2).expand(6, 10)
    config = dict(input_shape=(4,), outputs=5, loss="cross_entropy")
    learner = _learner("maml", 5.0, "safeguarded", **config)
    losses = torch.stack([task_cross_entropy(learner.predict(f, x), labels) for f in learner.trajectory(x, labels, 6)])
    assert (losses[2:] <= losses[1:-1]).all()


def test_learners_that_take_no_steps_are_untouched():
    x, y = _sinusoid_batch(tasks=3)
    for extra in ("plain", "safeguarded"):
        learner = _learner("cnp", 0.01, extra)
        outputs = [learner.query_outputs(f, x, y, x) for f in learner.trajectory(x, y, 3)]
        assert all(torch.equal(o, outputs[0]) for o in outputs)


def test_the_default_is_safeguarded_and_a_bad_value_is_refused():
    fields = {f.name: f.default for f in dataclasses.fields(LearnerConfig)}
    assert fields["extra_steps"] == "safeguarded"
    with pytest.raises(ValueError, match="extra_steps: expected one of safeguarded, plain, got 'sometimes'"):
        _learner("maml", 0.01, "sometimes")


@pytest.mark.parametrize("extra_steps", ["plain", "safeguarded"])
def test_a_saved_learner_keeps_its_rule_past_the_trained_steps(tmp_path, extra_steps):
    from metahpo.learners.artifacts import _read_config, save_learner

    learner = _learner("metasgd", 0.3, extra_steps)
    save_learner(learner, tmp_path)
    assert _read_config(tmp_path / "config.json") == learner.config
    config = json.loads((tmp_path / "config.json").read_text())
    config["learner"]["extra_steps"] = "sometimes"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="learner.extra_steps: expected one of safeguarded, plain"):
        _read_config(tmp_path / "config.json")
