"""A learned coordinatewise inner update rule, meta-trained with the initialisation, batched over tasks.

The few-shot form of "Learning to learn by gradient descent by gradient descent" (Andrychowicz et al.
2016), of which Ravi & Larochelle (2017, "Optimization as a model for few-shot learning") is the
classic instance. One small MLP, shared by every coordinate of every adapted weight, reads four
features of a coordinate: its gradient preprocessed as in Andrychowicz et al. (appendix A, ``p = 10``:
``(log|g| / p, sign g)`` when ``|g| >= e^-p``, else ``(-1, e^p g)``), its current value, and the inner
step number as a fraction of the steps it was meta-trained with. It outputs a gain ``a`` and a shift
``b``, and the coordinate moves by ``-inner_lr * (a * g + b)``. The MLP's output layer starts at zero
with ``a = 1, b = 0``, so an untrained rule is plain SGD (MAML's inner rule), much as Ravi & Larochelle
start their LSTM near SGD.
"""

from __future__ import annotations

import math

import torch

from metahpo.learners.mlp import Weights, init_weights

PREPROCESS_P = 10.0
FEATURES = 4


def init_rule_weights(hidden: int, generator: torch.Generator, device="cpu") -> Weights:
    """The rule MLP ``4 -> hidden -> 2``: first layer like ``torch.nn.Linear``, output layer ``a = 1, b = 0``."""
    weights = init_weights([FEATURES, hidden, 2], generator, device)
    weights["w1"] = torch.zeros_like(weights["w1"])
    weights["b1"] = torch.tensor([[1.0, 0.0]], device=device)
    return weights


def preprocess_gradient(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Andrychowicz et al.'s two gradient features: log-magnitude and sign, linear near zero."""
    small = math.exp(-PREPROCESS_P)
    large = g.abs() >= small
    # The clamp keeps log's gradient finite where the other branch is taken.
    magnitude = torch.where(large, g.abs().clamp_min(small).log() / PREPROCESS_P, -1.0)
    direction = torch.where(large, g.sign(), g * math.exp(PREPROCESS_P))
    return magnitude, direction


def rule_updates(
    rule: Weights, grads: list[torch.Tensor], values: list[torch.Tensor], progress: float, inner_lr: float
) -> list[torch.Tensor]:
    """The steps ``inner_lr * (a * g + b)`` of every coordinate of ``values`` (each ``[tasks, ...]``).

    ``progress`` is the inner step number over the trained steps. All coordinates go through the rule
    MLP as one ``[tasks, coordinates, 4]`` batch.
    """
    tasks = grads[0].shape[0]
    g = torch.cat([t.reshape(tasks, -1) for t in grads], dim=1)
    value = torch.cat([t.reshape(tasks, -1) for t in values], dim=1)
    features = torch.stack([*preprocess_gradient(g), value, torch.full_like(g, progress)], dim=-1)
    # One 2-D matrix product per layer, bias fused (addmm), over every coordinate of every task.
    hidden = torch.relu(torch.addmm(rule["b0"], features.view(-1, FEATURES), rule["w0"]))
    out = torch.addmm(rule["b1"], hidden, rule["w1"]).view(tasks, -1, 2)
    step = (out[..., 0] * g + out[..., 1]) * inner_lr
    return [s.view_as(t) for s, t in zip(step.split([t[0].numel() for t in grads], dim=1), grads)]
