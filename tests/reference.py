"""A plain per-task meta-gradient, written the way per-task loop libraries do it (clone, adapt, accumulate).

Used only by the tests, as the ground truth that the vectorised learners must match.
"""

from __future__ import annotations

import torch


def mlp(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """An MLP on one task: ``weights`` = [w0, b0, w1, b1, ...] with w of shape [in, out]."""
    h = x
    pairs = list(zip(weights[::2], weights[1::2]))
    for i, (w, b) in enumerate(pairs):
        h = h @ w + b
        if i < len(pairs) - 1:
            h = torch.relu(h)
    return h


def per_task_meta_loss(
    weights: list[torch.Tensor],
    lrs: list[torch.Tensor] | float,
    batch: tuple[torch.Tensor, ...],
    steps: int,
    second_order: bool,
    head_only: bool,
) -> torch.Tensor:
    """Mean query MSE after adapting each task on its own, one task at a time."""
    support_x, support_y, query_x, query_y = batch
    n_tasks = support_x.shape[0]
    adapted = list(range(len(weights) - 2, len(weights))) if head_only else list(range(len(weights)))
    total = 0.0
    for t in range(n_tasks):
        fast = list(weights)
        for _ in range(steps):
            loss = (mlp(fast, support_x[t]) - support_y[t]).pow(2).mean()
            grads = torch.autograd.grad(loss, [fast[i] for i in adapted], create_graph=second_order)
            for i, g in zip(adapted, grads):
                lr = lrs[i] if isinstance(lrs, list) else lrs
                fast[i] = fast[i] - lr * (g if second_order else g.detach())
        total = total + (mlp(fast, query_x[t]) - query_y[t]).pow(2).mean()
    return total / n_tasks


def conv_net(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The 4-block conv net on one task's images ``[points, height, width]``, written with plain torch ops."""
    h = x.unsqueeze(1)
    blocks = sum(1 for name in weights if name.startswith("conv"))
    for i in range(blocks):
        h = torch.nn.functional.conv2d(h, weights[f"conv{i}"], padding=1)
        h = torch.nn.functional.batch_norm(h, None, None, weights[f"scale{i}"], weights[f"shift{i}"], training=True)
        h = torch.relu(h)
        if min(h.shape[-2:]) > 1:
            h = torch.nn.functional.max_pool2d(h, 2)
    return h.flatten(1) @ weights["head_w"] + weights["head_b"]


def mlp_classifier(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The MLP on one task's flattened images."""
    depth = len(weights) // 2
    return mlp([weights[f"{k}{i}"] for i in range(depth) for k in ("w", "b")], x.flatten(1))


def per_task_classification_loss(net, weights: dict, lrs: dict | float, batch, steps: int, second_order: bool,
                                 adapted: list[str]) -> torch.Tensor:  # fmt: skip
    """Mean query cross-entropy after adapting each task on its own, one task at a time."""
    ce = torch.nn.functional.cross_entropy
    support_x, support_y, query_x, query_y = batch
    total = 0.0
    for t in range(support_x.shape[0]):
        fast = dict(weights)
        for _ in range(steps):
            loss = ce(net(fast, support_x[t]), support_y[t])
            grads = torch.autograd.grad(loss, [fast[n] for n in adapted], create_graph=second_order)
            for n, g in zip(adapted, grads):
                lr = lrs[n] if isinstance(lrs, dict) else lrs
                fast[n] = fast[n] - lr * (g if second_order else g.detach())
        total = total + ce(net(fast, query_x[t]), query_y[t])
    return total / support_x.shape[0]
