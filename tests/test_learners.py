"""The vectorised meta-learners against a plain per-task autograd reference, in float64."""

from __future__ import annotations

import pytest
import torch

from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.learners.mlp import forward, mlp_gradients

from reference import per_task_meta_loss, per_task_proximal_loss

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


# MAML++ (Antoniou et al. 2019): learned per-layer per-step rates, the multi-step loss, derivative-order annealing.


def make_lslr_learner(algorithm: str, steps: int) -> MetaLearner:
    """A learner with per-step rates, each set apart so that a mix-up of steps or layers would show."""
    config = LearnerConfig(algorithm, 16, 2, 0.05, steps, inner_rates="lslr")
    learner = MetaLearner(config, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    for p in learner.inner_lrs.values():
        p.data = torch.rand(p.shape, generator=g) * 0.1
    return learner.double()


def lslr_reference_grads(learner: MetaLearner, batch, second_order: bool, step_weights=None):
    """The per-task reference with the learner's per-step rates as leaves (layers ANIL keeps fixed get none)."""
    depth = len(learner.weights) // 2
    names = [n for i in range(depth) for n in (f"w{i}", f"b{i}")]
    leaves = {f"weights.{n}": learner.weights[n].detach().clone().requires_grad_(True) for n in names}
    rates = {f"inner_lrs.{n}": r.detach().clone().requires_grad_(True) for n, r in learner.inner_lrs.items()}
    leaves.update(rates)
    steps = learner.config.inner_steps
    lrs = [[rates[f"inner_lrs.{n}"][s] if f"inner_lrs.{n}" in rates else None for n in names] for s in range(steps)]
    weights = [leaves[f"weights.{n}"] for n in names]
    head_only = learner.config.algorithm == "anil"
    loss = per_task_meta_loss(weights, lrs, batch, steps, second_order, head_only, step_weights)
    return loss, dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("algorithm", ALGOS)
def test_lslr_meta_gradient_matches_per_task_reference(algorithm, steps):
    learner = make_lslr_learner(algorithm, steps)
    last = list(learner.inner_lrs)[-1]
    expected_shape = (steps, *learner.weights[last].shape) if algorithm == "metasgd" else (steps,)
    assert learner.inner_lrs[last].shape == expected_shape
    batch = make_batch()
    loss, grads = vectorised_grads(learner, batch)
    ref_loss, ref_grads = lslr_reference_grads(learner, batch, second_order=algorithm != "fomaml")
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)


def test_lslr_rates_differ_per_step_and_steps_past_the_trained_ones_reuse_the_last():
    learner = make_lslr_learner("maml", 2)
    batch = make_batch()
    _, grads = vectorised_grads(learner, batch)
    assert grads["inner_lrs.w0"][0] != grads["inner_lrs.w0"][1]  # each step's rate has its own gradient
    fast = list(learner.trajectory(batch[0], batch[1], 3))
    names = list(learner.weights)
    gradients = mlp_gradients(fast[2], batch[0], batch[1], names)
    for name, g in zip(names, gradients):  # the third step uses the second step's rates
        expected = fast[2][name] - learner.inner_lrs[name][1].detach() * g
        torch.testing.assert_close(fast[3][name], expected, rtol=1e-12, atol=1e-14, msg=name)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_multi_step_loss_matches_per_task_reference(algorithm):
    learner = make_learner(algorithm, 3)
    batch = make_batch()
    step_weights = [0.2, 0.3, 0.5]
    loss = learner.meta_loss(*batch, step_weights=step_weights)
    names, params = zip(*learner.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params)))
    depth = len(learner.weights) // 2
    order = [n for i in range(depth) for n in (f"w{i}", f"b{i}")]
    leaves = {f"weights.{n}": learner.weights[n].detach().clone().requires_grad_(True) for n in order}
    lrs: list | float = learner.config.inner_lr
    if algorithm == "metasgd":
        rates = {f"inner_lrs.{n}": learner.inner_lrs[n].detach().clone().requires_grad_(True) for n in order}
        lrs = list(rates.values())
        leaves.update(rates)
    ref_loss = per_task_meta_loss(
        [leaves[f"weights.{n}"] for n in order], lrs, batch, 3, algorithm != "fomaml", algorithm == "anil", step_weights
    )
    ref_grads = dict(zip(leaves, torch.autograd.grad(ref_loss, list(leaves.values()))))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)


def test_multi_step_loss_with_the_last_step_alone_is_the_plain_loss():
    learner = make_learner("maml", 3)
    batch = make_batch()
    torch.testing.assert_close(learner.meta_loss(*batch, step_weights=[0.0, 0.0, 1.0]), learner.meta_loss(*batch),
                               rtol=0, atol=0)  # fmt: skip
    with pytest.raises(ValueError, match="step_weights: expected 3 weights, got 2"):
        learner.meta_loss(*batch, step_weights=[0.5, 0.5])


@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "anil"])
def test_derivative_order_annealing_matches_first_order_reference(algorithm):
    learner = make_learner(algorithm, 2)
    batch = make_batch()
    loss = learner.meta_loss(*batch, first_order=True)
    names, params = zip(*learner.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params)))
    ref_loss, ref_grads = reference_grads(learner, batch, second_order=False)
    _, second = reference_grads(learner, batch, second_order=True)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)
    assert not torch.allclose(grads["weights.w0"], second["weights.w0"], rtol=1e-6, atol=1e-9)


# ANIL with a proximal head: each step solves the head's ridge problem around its start exactly.


def make_proximal_learner(steps: int, rate: float = 0.3) -> MetaLearner:
    return MetaLearner(LearnerConfig("anil_proximal", 16, 2, rate, steps), torch.Generator().manual_seed(1)).double()


def proximal_reference_grads(learner: MetaLearner, batch, step_weights=None, second_order=True):
    order = [f"{kind}{i}" for i in range(len(learner.weights) // 2) for kind in "wb"]
    leaves = {f"weights.{n}": learner.weights[n].detach().clone().requires_grad_(True) for n in order}
    leaves["inner_lrs.log_rate"] = learner.inner_lrs["log_rate"].detach().clone().requires_grad_(True)
    weights = [leaves[f"weights.{n}"] for n in order]
    steps = learner.config.inner_steps
    loss = per_task_proximal_loss(weights, leaves["inner_lrs.log_rate"].exp(), batch, steps, step_weights, second_order)
    return loss, dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)))


@pytest.mark.parametrize("step_weights", [None, [0.2, 0.3, 0.5]])
@pytest.mark.parametrize("steps", [1, 3])
def test_proximal_head_meta_gradient_matches_per_task_reference(steps, step_weights):
    if step_weights is not None and steps == 1:
        step_weights = [1.0]
    learner = make_proximal_learner(steps)
    batch = make_batch(shots=5)  # fewer support points than features: the ridge term decides the solution
    loss = learner.meta_loss(*batch, step_weights=step_weights)
    names, params = zip(*learner.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params)))
    ref_loss, ref_grads = proximal_reference_grads(learner, batch, step_weights)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-8, atol=1e-11, msg=name)
    assert grads["inner_lrs.log_rate"].abs() > 0  # the rate is meta-learned


def test_proximal_head_first_order_matches_per_task_reference():
    learner = make_proximal_learner(2)
    batch = make_batch(shots=5)
    loss = learner.meta_loss(*batch, first_order=True)
    names, params = zip(*learner.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params, allow_unused=True)))
    ref_loss, ref_grads = proximal_reference_grads(learner, batch, second_order=False)
    _, second = proximal_reference_grads(learner, batch)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    assert grads["inner_lrs.log_rate"] is None and ref_grads["inner_lrs.log_rate"] is None
    for name in ("weights.w0", "weights.b0", "weights.w1", "weights.b1", "weights.w2", "weights.b2"):
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-8, atol=1e-11, msg=name)
    assert not torch.allclose(grads["weights.w0"], second["weights.w0"], rtol=1e-6, atol=1e-9)


def test_a_proximal_step_at_a_small_rate_is_anils_gradient_step():
    rate = 1e-8
    proximal, anil = make_proximal_learner(1, rate), make_learner("anil", 1, inner_lr=rate)
    anil.load_state_dict({k: v for k, v in proximal.state_dict().items() if not k.startswith("inner_lrs.")})
    sx, sy, _, _ = make_batch()
    start = {n: w.expand(4, *w.shape) for n, w in proximal.weights.items()}
    moved = {n: proximal.adapt(sx, sy)[n] - start[n] for n in ("w2", "b2")}
    expected = {n: anil.adapt(sx, sy)[n] - start[n] for n in ("w2", "b2")}
    for name in moved:
        torch.testing.assert_close(moved[name], expected[name], rtol=1e-4, atol=0, msg=name)


def test_a_proximal_step_at_a_large_rate_fits_the_support_set():
    learner = make_proximal_learner(1, rate=1e12)
    sx, sy, _, _ = make_batch(shots=5)  # 5 points, 17 head weights: an exact fit exists
    fast = learner.adapt(sx, sy)
    assert learner.task_loss(learner.predict(fast, sx), sy).max() < 1e-9
    for name in ("w0", "b0", "w1", "b1"):  # the body does not adapt
        torch.testing.assert_close(fast[name], learner.weights[name].expand_as(fast[name]), rtol=0, atol=0)


def test_proximal_steps_past_the_trained_ones_keep_lowering_the_support_loss():
    learner = make_proximal_learner(1, rate=0.05)
    sx, sy, _, _ = make_batch(shots=10)
    losses = [learner.task_loss(learner.predict(fast, sx), sy) for fast in learner.trajectory(sx, sy, 5)]
    for before, after in zip(losses, losses[1:]):
        assert (after <= before + 1e-12).all()
    assert (losses[-1] < losses[1]).all()


def test_a_proximal_step_solves_near_duplicate_support_points_at_a_large_rate():
    learner = MetaLearner(LearnerConfig("anil_proximal", 32, 2, 1e9, 1), torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 10, 1, generator=g) * 10 - 5
    x[:, 1] = x[:, 0]  # float32, a duplicated point: the Gram matrix is singular and mu is 1e-9 of its scale
    y = 2 * torch.sin(x - 1)
    loss = learner.meta_loss(x, y, x, y)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in learner.parameters())
