"""A plain per-task meta-gradient, written the way per-task loop libraries do it (clone, adapt, accumulate).

Used only by the tests, as the ground truth that the vectorised learners must match.
"""

from __future__ import annotations

import math

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
    lrs: list | float,
    batch: tuple[torch.Tensor, ...],
    steps: int,
    second_order: bool,
    head_only: bool,
    step_weights: list[float] | None = None,
) -> torch.Tensor:
    """Mean query MSE after adapting each task on its own, one task at a time.

    ``lrs``: one rate, a rate per weight tensor, or (per-step rates) a list over steps of either. With
    ``step_weights`` the loss is the weighted sum of the query MSEs after every step (MAML++'s multi-step loss).
    """
    support_x, support_y, query_x, query_y = batch
    n_tasks = support_x.shape[0]
    adapted = list(range(len(weights) - 2, len(weights))) if head_only else list(range(len(weights)))
    per_step = isinstance(lrs, list) and isinstance(lrs[0], list)
    total = 0.0
    for t in range(n_tasks):
        fast = list(weights)
        for step in range(steps):
            loss = (mlp(fast, support_x[t]) - support_y[t]).pow(2).mean()
            grads = torch.autograd.grad(loss, [fast[i] for i in adapted], create_graph=second_order)
            rates = lrs[step] if per_step else lrs
            for i, g in zip(adapted, grads):
                lr = rates[i] if isinstance(rates, list) else rates
                fast[i] = fast[i] - lr * (g if second_order else g.detach())
            if step_weights is not None:
                total = total + step_weights[step] * (mlp(fast, query_x[t]) - query_y[t]).pow(2).mean()
        if step_weights is None:
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
    return mlp(_mlp_list(weights), x.flatten(1))


def per_task_classification_loss(net, weights: dict, lrs: dict | float, batch, steps: int, second_order: bool,
                                 adapted: list[str], prototype_head: bool = False) -> torch.Tensor:  # fmt: skip
    """Mean query cross-entropy after adapting each task on its own, one task at a time.

    ``prototype_head`` (Proto-MAML): each task's head starts as ``weights``' head plus ``2 c_k`` and ``-|c_k|^2``
    for the class means ``c_k`` of the support features, a weight of its own for the inner steps.
    """
    ce = torch.nn.functional.cross_entropy
    support_x, support_y, query_x, query_y = batch
    total = 0.0
    for t in range(support_x.shape[0]):
        fast = dict(weights)
        if prototype_head:
            fast = {n: w.view_as(w) for n, w in weights.items()}  # inner gradients: not through the prototypes
            features = net({**weights, "head_w": torch.eye(weights["head_w"].shape[0], dtype=torch.float64),
                            "head_b": 0}, support_x[t])  # fmt: skip
            means = torch.stack([features[support_y[t] == c].mean(0) for c in range(weights["head_w"].shape[1])])
            fast["head_w"] = fast["head_w"] + 2 * means.T
            fast["head_b"] = fast["head_b"] - means.pow(2).sum(1)
        for _ in range(steps):
            loss = ce(net(fast, support_x[t]), support_y[t])
            grads = torch.autograd.grad(loss, [fast[n] for n in adapted], create_graph=second_order)
            for n, g in zip(adapted, grads):
                lr = lrs[n] if isinstance(lrs, dict) else lrs
                fast[n] = fast[n] - lr * (g if second_order else g.detach())
        total = total + ce(net(fast, query_x[t]), query_y[t])
    return total / support_x.shape[0]


def _mlp_list(weights: dict[str, torch.Tensor], prefix: str = "") -> list[torch.Tensor]:
    depth = sum(1 for name in weights if name.startswith(f"{prefix}w"))
    return [weights[f"{prefix}{k}{i}"] for i in range(depth) for k in ("w", "b")]


def per_task_cnp_loss(weights: dict[str, torch.Tensor], batch, ways: int | None) -> torch.Tensor:
    """Mean query loss of a conditional neural process, one task (and, for classification, one class) at a time."""
    encoder, decoder = _mlp_list(weights, "enc_"), _mlp_list(weights, "dec_")
    support_x, support_y, query_x, query_y = batch
    total = 0.0
    for t in range(support_x.shape[0]):
        sx, qx = support_x[t].flatten(1), query_x[t].flatten(1)
        if ways is None:
            r = mlp(encoder, torch.cat([sx, support_y[t]], dim=1)).mean(dim=0)
            prediction = mlp(decoder, torch.cat([qx, r.expand(len(qx), -1)], dim=1))
            total = total + (prediction - query_y[t]).pow(2).mean()
            continue
        logits = []
        for c in range(ways):
            r = mlp(encoder, sx[support_y[t] == c]).mean(dim=0)
            logits.append(mlp(decoder, torch.cat([qx, r.expand(len(qx), -1)], dim=1))[:, 0])
        total = total + torch.nn.functional.cross_entropy(torch.stack(logits, dim=1), query_y[t])
    return total / support_x.shape[0]


def coordinate_rule(rule: dict[str, torch.Tensor], g: torch.Tensor, w: torch.Tensor, progress: float) -> torch.Tensor:
    """The learned rule's ``a * g + b`` for one weight tensor, from Andrychowicz et al.'s features (p = 10)."""
    small = math.exp(-10)
    magnitude = torch.where(g.abs() >= small, torch.log(torch.clamp(g.abs(), min=small)) / 10, -1.0)
    direction = torch.where(g.abs() >= small, torch.sign(g), g * math.exp(10))
    features = torch.stack([magnitude, direction, w, torch.full_like(w, progress)], dim=-1)
    a, b = (torch.relu(features @ rule["w0"] + rule["b0"]) @ rule["w1"] + rule["b1"]).unbind(-1)
    return a * g + b


def per_task_learned_rule_loss(
    weights: list[torch.Tensor], rule: dict, inner_lr: float, batch, steps: int, second_order: bool
) -> torch.Tensor:
    """Mean query MSE after adapting each task on its own with the learned rule, one weight tensor at a time."""
    support_x, support_y, query_x, query_y = batch
    total = 0.0
    for t in range(support_x.shape[0]):
        fast = list(weights)
        for step in range(steps):
            loss = (mlp(fast, support_x[t]) - support_y[t]).pow(2).mean()
            grads = torch.autograd.grad(loss, fast, create_graph=second_order)
            for i, g in enumerate(grads):
                update = coordinate_rule(rule, g if second_order else g.detach(), fast[i], step / steps)
                fast[i] = fast[i] - inner_lr * update
        total = total + (mlp(fast, query_x[t]) - query_y[t]).pow(2).mean()
    return total / support_x.shape[0]


def per_task_proximal_loss(
    weights: list[torch.Tensor],
    rate: torch.Tensor,
    batch,
    steps: int,
    step_weights: list[float] | None = None,
    second_order: bool = True,
) -> torch.Tensor:
    """Mean query MSE after each task's head solves ``min L_support(h) + |h - h0|^2 / (2 rate)`` on its own.

    The head (last weight and bias) is solved in its own ``H + 1`` dimensions from the normal equations,
    one task at a time; every step starts from the last one's solution. First order (``second_order``
    False), the support features and the rate are constants of the meta-gradient.
    """
    support_x, support_y, query_x, query_y = batch
    total = 0.0
    for t in range(support_x.shape[0]):
        features = torch.relu(mlp(weights[:-2], support_x[t]))
        if not second_order:
            features, rate = features.detach(), rate.detach()
        augmented = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
        head = torch.cat([weights[-2], weights[-1]], dim=0)
        scale = 2.0 / support_y[t].numel()  # the support MSE's Hessian is scale * F^T F
        for step in range(steps):
            system = scale * augmented.T @ augmented + torch.eye(len(head), dtype=head.dtype) / rate
            head = torch.linalg.solve(system, scale * augmented.T @ support_y[t] + head / rate)
            if step_weights is not None:
                total = total + step_weights[step] * (mlp([*weights[:-2], head[:-1], head[-1:]], query_x[t])
                                                      - query_y[t]).pow(2).mean()  # fmt: skip
        if step_weights is None:
            total = total + (mlp([*weights[:-2], head[:-1], head[-1:]], query_x[t]) - query_y[t]).pow(2).mean()
    return total / support_x.shape[0]
