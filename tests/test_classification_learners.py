"""Meta-learners on N-way classification (conv net and MLP, prototypical networks) against per-task references."""

from __future__ import annotations

import pytest
import torch

from metahpo.learners.conv import conv_forward, init_conv_weights
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner

from reference import conv_net, mlp_classifier, per_task_classification_loss

WAYS, SHOTS, QUERY, SIDE = 3, 2, 2, 8


def episode_batch(tasks=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(WAYS)
    support_y = labels.repeat_interleave(SHOTS).expand(tasks, -1).contiguous()
    query_y = labels.repeat_interleave(QUERY).expand(tasks, -1).contiguous()
    support_x = torch.rand(tasks, WAYS * SHOTS, SIDE, SIDE, generator=g, dtype=torch.float64)
    query_x = torch.rand(tasks, WAYS * QUERY, SIDE, SIDE, generator=g, dtype=torch.float64)
    return support_x, support_y, query_x, query_y


def classifier(algorithm: str, arch: str, steps: int) -> MetaLearner:
    config = LearnerConfig(
        algorithm, 4, 4 if arch == "conv" else 2, 0.3, steps, arch, (SIDE, SIDE), WAYS, "cross_entropy"
    )
    learner = MetaLearner(config, torch.Generator().manual_seed(1)).double()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # batch-norm scales and shifts away from 1 and 0, distinct Meta-SGD rates
        for name, p in learner.named_parameters():
            if "scale" in name or "shift" in name:
                p.add_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 0.5)
            if name.startswith("inner_lrs"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return learner


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "metasgd", "anil"])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_classification_meta_gradient_matches_per_task_reference(arch, algorithm, steps):
    learner = classifier(algorithm, arch, steps)
    batch = episode_batch()
    loss = learner.meta_loss(*batch)
    names, params = zip(*learner.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params, allow_unused=True)))

    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in learner.named_parameters()}
    weights = {n.removeprefix("weights."): v for n, v in leaves.items() if n.startswith("weights.")}
    rates = {n.removeprefix("inner_lrs."): v for n, v in leaves.items() if n.startswith("inner_lrs.")}
    net = conv_net if arch == "conv" else mlp_classifier
    reference = per_task_classification_loss(
        net, weights, rates or learner.config.inner_lr, batch, steps, algorithm != "fomaml", learner.adapted
    )
    expected = dict(zip(leaves, torch.autograd.grad(reference, list(leaves.values()), allow_unused=True)))
    torch.testing.assert_close(loss, reference, rtol=1e-9, atol=1e-12)
    for name in leaves:
        got, want = grads[name], expected[name]
        if want is None:
            assert got is None or not got.any(), name
        else:
            torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10, msg=name)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [0, 1, 2])
def test_protomaml_meta_gradient_matches_per_task_reference(steps, first_order):
    learner = classifier("protomaml", "conv", max(steps, 1))
    with torch.no_grad():  # a shared head away from its zero start
        learner.weights["head_w"].add_(torch.rand(learner.weights["head_w"].shape, dtype=torch.float64) * 0.2)
    batch = episode_batch()
    loss = learner.meta_loss(*batch, steps=steps, first_order=first_order)
    names, params = zip(*learner.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params)))
    leaves = {n.removeprefix("weights."): p.detach().clone().requires_grad_(True) for n, p in zip(names, params)}
    reference = per_task_classification_loss(
        conv_net, leaves, 0.3, batch, steps, not first_order, learner.adapted, prototype_head=True
    )
    expected = dict(zip(names, torch.autograd.grad(reference, list(leaves.values()))))
    torch.testing.assert_close(loss, reference, rtol=1e-9, atol=1e-12)
    for name in names:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-7, atol=1e-10, msg=name)


def test_protomaml_before_any_step_is_the_prototypical_network():
    protomaml, protonet = classifier("protomaml", "conv", 1), classifier("protonet", "conv", 1)
    protonet.load_state_dict(protomaml.state_dict())
    assert not protomaml.weights["head_w"].any() and not protomaml.weights["head_b"].any()
    support_x, support_y, query_x, query_y = episode_batch()
    at_zero = next(protomaml.trajectory(support_x, support_y, 1))
    logits = protomaml.query_outputs(at_zero, support_x, support_y, query_x)
    shared = next(protonet.trajectory(support_x, support_y, 0))
    distances = protonet.query_outputs(shared, support_x, support_y, query_x)
    # Equal up to -|q|^2, one term per query point: the same softmax, the same classes.
    torch.testing.assert_close(torch.log_softmax(logits, -1), torch.log_softmax(distances, -1), rtol=1e-9, atol=1e-10)


def test_conv_anil_adapts_only_the_head_and_first_order_drops_second_order_terms():
    anil = classifier("anil", "conv", 1)
    assert anil.adapted == ["head_w", "head_b"]
    batch = episode_batch()
    maml, fomaml = classifier("maml", "conv", 1), classifier("fomaml", "conv", 1)
    g2 = torch.autograd.grad(maml.meta_loss(*batch), maml.weights["conv0"])[0]
    g1 = torch.autograd.grad(fomaml.meta_loss(*batch), fomaml.weights["conv0"])[0]
    assert not torch.allclose(g1, g2)


def test_prototypical_network_matches_per_task_distances():
    learner = classifier("protonet", "conv", 1)
    support_x, support_y, query_x, query_y = batch = episode_batch()
    loss = learner.meta_loss(*batch)
    weights = {n: p for n, p in learner.weights.items()}
    expected = 0.0
    for t in range(support_x.shape[0]):
        feats = conv_net({**weights, "head_w": torch.eye(4 * 1, dtype=torch.float64), "head_b": 0}, support_x[t])
        queries = conv_net({**weights, "head_w": torch.eye(4, dtype=torch.float64), "head_b": 0}, query_x[t])
        prototypes = torch.stack([feats[support_y[t] == c].mean(0) for c in range(WAYS)])
        logits = -torch.cdist(queries, prototypes).pow(2)
        expected = expected + torch.nn.functional.cross_entropy(logits, query_y[t])
    torch.testing.assert_close(loss, expected / support_x.shape[0], rtol=1e-9, atol=1e-12)
    assert learner.adapted == []
    fast = list(learner.trajectory(support_x, support_y, 2))
    assert all(torch.equal(fast[0]["conv0"], f["conv0"]) for f in fast)


def test_conv_net_is_vectorised_over_tasks():
    learner = classifier("maml", "conv", 1)
    support_x, *_ = episode_batch(tasks=4)
    fast = {n: w.expand(4, *w.shape) for n, w in learner.weights.items()}
    together = learner.predict(fast, support_x)
    for t in range(4):
        alone = conv_net(dict(learner.weights), support_x[t])
        torch.testing.assert_close(together[t], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("side", "blocks"), [(5, 2), (7, 3), (12, 4), (28, 4)])
def test_conv_net_matches_reference_on_other_image_sizes(side, blocks):
    g = torch.Generator().manual_seed(3)
    shapes = {n: w.shape for n, w in init_conv_weights(6, blocks, side, WAYS, g).items()}
    # Each task its own random kernels, batch-norm scales and shifts, so a mix-up of tasks, taps or channels shows.
    weights = {n: torch.rand(3, *shape, generator=g, dtype=torch.float64) - 0.3 for n, shape in shapes.items()}
    images = torch.rand(3, 4, side, side, generator=g, dtype=torch.float64)
    together = conv_forward(weights, images)
    for t in range(3):
        alone = conv_net({n: w[t] for n, w in weights.items()}, images[t])
        torch.testing.assert_close(together[t], alone, rtol=1e-10, atol=1e-12)
