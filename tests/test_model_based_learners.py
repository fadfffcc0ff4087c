"""The conditional neural process and the learned optimizer against plain per-task autograd references, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from test_classification_learners import SIDE, WAYS, episode_batch
from test_learners import make_batch, vectorised_grads

from metahpo.learners import learned_rule
from metahpo.learners.adaptation import trained_steps
from metahpo.learners.learned_rule import preprocess_gradient, rule_updates
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner

from reference import coordinate_rule, per_task_cnp_loss, per_task_learned_rule_loss


def learner(algorithm: str, steps: int = 1, classify: bool = False) -> MetaLearner:
    shape = dict(input_shape=(SIDE, SIDE), outputs=WAYS, loss="cross_entropy") if classify else {}
    config = LearnerConfig(algorithm, 12, 2, 0.05, steps, representation=6, rule_hidden=5, **shape)
    result = MetaLearner(config, torch.Generator().manual_seed(1)).double()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a rule away from plain SGD, so that every rule weight has a gradient to check
        for p in result.rule.values():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return result


def leaves(module: MetaLearner) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().requires_grad_(True) for n, p in module.named_parameters()}


def assert_same(loss, grads, ref_loss, ref_leaves):
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    ref_grads = dict(zip(ref_leaves, torch.autograd.grad(ref_loss, list(ref_leaves.values()))))
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("classify", [False, True], ids=["regression", "classification"])
def test_cnp_meta_gradient_matches_per_task_reference(classify):
    cnp = learner("cnp", classify=classify)
    batch = episode_batch() if classify else make_batch()
    loss, grads = vectorised_grads(cnp, batch)
    ref = leaves(cnp)
    weights = {n.removeprefix("weights."): w for n, w in ref.items()}
    assert_same(loss, grads, per_task_cnp_loss(weights, batch, WAYS if classify else None), ref)


def test_cnp_ignores_the_order_of_the_support_set_and_takes_no_steps():
    cnp = learner("cnp")
    sx, sy, qx, _ = make_batch()
    order = torch.randperm(sx.shape[1], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        outputs = [cnp.query_outputs(fast, sx, sy, qx) for fast in cnp.trajectory(sx, sy, 3)]
        shuffled = cnp.query_outputs(next(cnp.trajectory(sx, sy, 0)), sx[:, order], sy[:, order], qx)
    assert all(torch.equal(o, outputs[0]) for o in outputs)
    torch.testing.assert_close(shuffled, outputs[0], rtol=1e-12, atol=1e-12)
    assert trained_steps(cnp) == 0 and not cnp.adapted


@pytest.mark.parametrize("blocks", ["one block", "blocks of 7"])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("algorithm", ["learned_optimizer", "learned_optimizer_fo"])
def test_learned_optimizer_meta_gradient_matches_per_task_reference(algorithm, steps, blocks, monkeypatch):
    optimizer = learner(algorithm, steps)
    if blocks != "one block":  # the rule network in blocks of 7 coordinates, the last one shorter
        monkeypatch.setattr(learned_rule, "BLOCK_VALUES", 7 * optimizer.config.rule_hidden)
    batch = make_batch()
    loss, grads = vectorised_grads(optimizer, batch)
    ref = leaves(optimizer)
    depth = len(optimizer.weights) // 2
    weights = [ref[f"weights.{k}{i}"] for i in range(depth) for k in ("w", "b")]
    rule = {n.removeprefix("rule."): w for n, w in ref.items() if n.startswith("rule.")}
    second_order = algorithm == "learned_optimizer"
    ref_loss = per_task_learned_rule_loss(weights, rule, optimizer.config.inner_lr, batch, steps, second_order)
    assert_same(loss, grads, ref_loss, ref)


def test_untrained_rule_is_sgd_and_first_order_differs_only_in_the_meta_gradient():
    maml = MetaLearner(LearnerConfig("maml", 12, 2, 0.05, 2), torch.Generator().manual_seed(1)).double()
    optimizers = [
        MetaLearner(LearnerConfig(a, 12, 2, 0.05, 2, rule_hidden=5), torch.Generator().manual_seed(1)).double()
        for a in ("learned_optimizer", "learned_optimizer_fo")
    ]
    batch = make_batch()
    losses = [vectorised_grads(m, batch) for m in (maml, *optimizers)]
    torch.testing.assert_close(losses[1][0], losses[0][0], rtol=1e-12, atol=0)
    assert torch.equal(losses[1][0], losses[2][0])
    assert not torch.allclose(losses[1][1]["weights.w0"], losses[2][1]["weights.w0"], rtol=1e-6, atol=1e-9)


def test_trajectory_of_the_learned_optimizer_matches_its_adaptation():
    optimizer = learner("learned_optimizer", 3)
    sx, sy, _, _ = make_batch()
    for k, fast in enumerate(optimizer.trajectory(sx, sy, 3)):
        expected = optimizer.adapt(sx, sy, steps=k)
        for name in fast:
            torch.testing.assert_close(fast[name], expected[name].detach())


@pytest.mark.parametrize("block", [1, 4, 1000])
def test_rule_steps_and_their_gradients_match_the_coordinatewise_rule(block, monkeypatch):
    """Every branch of the preprocessing (log, linear, zero), in blocks of any size, against autograd."""
    monkeypatch.setattr(learned_rule, "BLOCK_VALUES", block * 5)
    gen = torch.Generator().manual_seed(4)
    rule = {n: torch.randn(s, generator=gen, dtype=torch.float64) for n, s in (("w0", (4, 5)), ("b0", (1, 5)))}
    rule |= {n: torch.randn(s, generator=gen, dtype=torch.float64) for n, s in (("w1", (5, 2)), ("b1", (1, 2)))}
    scale = torch.tensor([1.0, 1e-3, 1e-5, 1e-7, 0.0], dtype=torch.float64)
    g = [torch.randn(3, 5, generator=gen, dtype=torch.float64) * scale, torch.randn(3, 1, 4, generator=gen).double()]
    w = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in g]
    leaves = [t.requires_grad_(True) for t in (*g, *w, *rule.values())]
    steps = rule_updates(rule, g, w, 0.5, 0.1)
    expected = [0.1 * coordinate_rule(rule, gi, wi, 0.5) for gi, wi in zip(g, w)]
    upstream = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in steps]
    for got, want in zip(steps, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    grads = torch.autograd.grad(steps, leaves, upstream)
    for got, want in zip(grads, torch.autograd.grad(expected, leaves, upstream)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_gradient_preprocessing_follows_andrychowicz_et_al():
    g = torch.tensor([2.0, -0.5, 1e-6, -1e-6, 0.0], dtype=torch.float64)
    magnitude, direction = preprocess_gradient(g)
    torch.testing.assert_close(magnitude, torch.tensor([math.log(2) / 10, math.log(0.5) / 10, -1, -1, -1.0]).double())
    torch.testing.assert_close(direction, torch.tensor([1, -1, 1e-6 * math.exp(10), -1e-6 * math.exp(10), 0]).double())
