"""The vectorised meta-learners against a plain per-task autograd reference, in float64."""

from __future__ import annotations

import pytest
import torch

from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.learners.mlp import forward

from reference import per_task_meta_loss

ALGOS = ("maml", "fomaml", "metasgd", "anil")


def make_batch(n_tasks=4, shots=5, query=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    amplitude = torch.rand(n_tasks, 1, 1, generator=g, dtype=torch.float64) * 4 + 0.5
    phase = torch.rand(n_tasks, 1, 1, generator=g, dtype=torch.float64) * 3
    sx = torch.rand(n_tasks, shots, 1, generator=g, dtype=torch.float64) * 10 - 5
    qx = torch.rand(n_tasks, query, 1, generator=g, dtype=torch.float64) * 10 - 5
    return sx, amplitude * torch.sin(sx - phase), qx, amplitude * torch.sin(qx - phase)


def make_learner(algorithm: str, steps: int, inner_lr: float = 0.05) -> MetaLearner:
    learner = MetaLearner(LearnerConfig(algorithm, 16, 2, inner_lr, steps), torch.Generator().manual_seed(1))
    if algorithm == "metasgd":  # distinct per-parameter rates, so a mix-up of rates would show
        g = torch.Generator().manual_seed(2)
        for p in learner.inner_lrs.values():
            p.data = torch.rand(p.shape, generator=g) * 0.1
    return learner.double()


def vectorised_grads(learner: MetaLearner, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = learner.meta_loss(*batch)
    names, params = zip(*learner.named_parameters())
    return loss, dict(zip(names, torch.autograd.grad(loss, params)))


def reference_grads(learner: MetaLearner, batch, second_order: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    depth = len(learner.weights) // 2
    names = [n for i in range(depth) for n in (f"w{i}", f"b{i}")]
    leaves = {f"weights.{n}": learner.weights[n].detach().clone().requires_grad_(True) for n in names}
    lrs: list | float = learner.config.inner_lr
    if learner.config.algorithm == "metasgd":
        rates = {f"inner_lrs.{n}": learner.inner_lrs[n].detach().clone().requires_grad_(True) for n in names}
        lrs = list(rates.values())
        leaves.update(rates)
    weights = [leaves[f"weights.{n}"] for n in names]
    head_only = learner.config.algorithm == "anil"
    loss = per_task_meta_loss(weights, lrs, batch, learner.config.inner_steps, second_order, head_only)
    return loss, dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("algorithm", ALGOS)
def test_meta_gradient_matches_per_task_reference(algorithm, steps):
    learner = make_learner(algorithm, steps)
    batch = make_batch()
    loss, grads = vectorised_grads(learner, batch)
    ref_loss, ref_grads = reference_grads(learner, batch, second_order=algorithm != "fomaml")
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_differs_from_second_order_only_in_the_meta_gradient(steps):
    maml, fomaml = make_learner("maml", steps), make_learner("fomaml", steps)
    fomaml.load_state_dict(maml.state_dict())
    batch = make_batch()
    loss_so, grads_so = vectorised_grads(maml, batch)
    loss_fo, grads_fo = vectorised_grads(fomaml, batch)
    torch.testing.assert_close(loss_so, loss_fo, rtol=0, atol=0)  # same adapted weights, same loss
    # The second-order terms are non-zero for the hidden layers; first-order must equal the
    # reference with the inner gradients detached, and second-order must not.
    _, ref_fo = reference_grads(maml, batch, second_order=False)
    for name in grads_fo:
        torch.testing.assert_close(grads_fo[name], ref_fo[name], rtol=1e-9, atol=1e-12)
    # The output-layer bias gets the same gradient either way; the hidden layers must not.
    assert not torch.allclose(grads_so["weights.w0"], grads_fo["weights.w0"], rtol=1e-6, atol=1e-9)


def test_zero_inner_steps_of_first_order_equals_plain_regression_gradient():
    learner = make_learner("fomaml", 1, inner_lr=0.0)
    batch = make_batch()
    _, grads = vectorised_grads(learner, batch)
    weights = {n: w.detach().clone().requires_grad_(True) for n, w in learner.weights.items()}
    loss = (forward({n: w.expand(4, *w.shape) for n, w in weights.items()}, batch[2]) - batch[3]).pow(2).mean()
    expected = dict(zip(weights, torch.autograd.grad(loss, list(weights.values()))))
    for name, e in expected.items():
        torch.testing.assert_close(grads[f"weights.{name}"], e)


def test_anil_adapts_only_the_head():
    learner = make_learner("anil", 2)
    sx, sy, _, _ = make_batch()
    fast = learner.adapt(sx, sy)
    for name, w in learner.weights.items():
        expanded = w.expand_as(fast[name])
        if name in ("w2", "b2"):
            assert not torch.equal(fast[name], expanded)
        else:
            assert torch.equal(fast[name], expanded)


def test_trajectory_matches_differentiable_adaptation():
    learner = make_learner("metasgd", 3)
    sx, sy, _, _ = make_batch()
    steps = list(learner.trajectory(sx, sy, 3))
    assert len(steps) == 4
    for k, fast in enumerate(steps):
        expected = learner.adapt(sx, sy, steps=k)
        for name in fast:
            torch.testing.assert_close(fast[name], expected[name].detach())


def test_unknown_algorithm_is_rejected():
    with pytest.raises(ValueError, match="unknown algorithm 'reptile'"):
        MetaLearner(LearnerConfig("reptile", 8, 1, 0.01, 1), torch.Generator().manual_seed(0))
