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
from torch.autograd.function import once_differentiable

from metahpo.learners.mlp import Weights, init_weights

PREPROCESS_P = 10.0
FEATURES = 4


def init_rule_weights(hidden: int, generator: torch.Generator, device="cpu") -> Weights:
    """The rule MLP ``4 -> hidden -> 2``: first layer like ``torch.nn.Linear``, output layer ``a = 1, b = 0``."""
    weights = init_weights([FEATURES, hidden, 2], generator, device)
    weights["w1"] = torch.zeros_like(weights["w1"])
    weights["b1"] = torch.tensor([[1.0, 0.0]], device=device)
    return weights


def _preprocess(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`preprocess_gradient`'s features and where the log branch is taken (``|g| >= e^-p``).

    Works in place on its own intermediates, which autograd could not differentiate: for
    :class:`_RuleStep`, whose backward is written out.
    """
    small = math.exp(-PREPROCESS_P)
    size = g.abs()
    large = size >= small
    # The clamp keeps log's gradient finite where the other branch is taken.
    magnitude = torch.where(large, size.clamp_min_(small).log_() / PREPROCESS_P, -1.0)
    direction = torch.where(large, g.sign(), g * math.exp(PREPROCESS_P))
    return magnitude, direction, large


def preprocess_gradient(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Andrychowicz et al.'s two gradient features: log-magnitude and sign, linear near zero."""
    small = math.exp(-PREPROCESS_P)
    large = g.abs() >= small
    # The clamp keeps log's gradient finite where the other branch is taken.
    magnitude = torch.where(large, g.abs().clamp_min(small).log() / PREPROCESS_P, -1.0)
    direction = torch.where(large, g.sign(), g * math.exp(PREPROCESS_P))
    return magnitude, direction


# Coordinates go through the rule network in blocks of this many hidden values (on the CPU), so that a
# block's hidden layer and its gradient stay in the core's cache instead of streaming through memory.
BLOCK_VALUES = 1 << 17


class _RuleStep(torch.autograd.Function):
    """``a * g + b`` of every coordinate, from its gradient ``g`` and value, with a hand-written backward.

    ``first`` ``[FEATURES, hidden]`` is the rule's first layer with the progress term folded into its
    bias, which multiplies a row of ones (the last feature row); ``second`` ``[hidden, 2]`` and ``bias``
    ``[2, 1]`` are the output layer. Features are rows (``[FEATURES, coordinates]``); the network runs
    block by block and the backward recomputes a block's hidden layer rather than keeping it: its
    gradient is the plain chain rule through the ReLU network and the gradient preprocessing, written
    out so that the hidden activations of all coordinates are never held or read back from memory.
    """

    @staticmethod
    def forward(ctx, g, value, first, second, bias):
        magnitude, direction, large = _preprocess(g)
        features = torch.stack([magnitude, direction, value, torch.ones_like(g)])
        out = g.new_empty(2, g.shape[0])
        blocks = _blocks(g, first.shape[1])
        hidden_values = g.new_empty(first.shape[1] * (blocks[0].stop - blocks[0].start))
        for block in blocks:
            hidden = _hidden(first, features[:, block], hidden_values)
            torch.addmm(bias, second.t(), hidden, out=out[:, block])
        ctx.save_for_backward(g, features, out, large, first, second)
        return torch.addcmul(out[1], out[0], g)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_step):
        g, features, out, large, first, second = ctx.saved_tensors
        grad_out = torch.stack([grad_step * g, grad_step])  # step = a * g + b
        grad_features = g.new_empty(FEATURES - 1, g.shape[0])  # the row of ones needs none
        grad_first = torch.zeros_like(first)
        grad_second = second.new_zeros(second.shape[1], second.shape[0])
        blocks = _blocks(g, first.shape[1])
        size = first.shape[1] * (blocks[0].stop - blocks[0].start)
        hidden_values, grad_values = g.new_empty(size), g.new_empty(size)
        for block in blocks:
            f, go = features[:, block], grad_out[:, block]
            hidden = _hidden(first, f, hidden_values)
            grad_second.addmm_(go, hidden.t())
            grad_hidden = torch.mm(second, go, out=grad_values[: hidden.numel()].view(hidden.shape))
            torch.ops.aten.threshold_backward.grad_input(grad_hidden, hidden, 0, grad_input=grad_hidden)
            torch.mm(first[:-1], grad_hidden, out=grad_features[:, block])
            grad_first.addmm_(f, grad_hidden.t())
        grad_g = None
        if ctx.needs_input_grad[0]:
            # d magnitude / dg = 1 / (p g) on the log branch; d direction / dg = e^p on the linear one.
            from_features = torch.where(
                large, grad_features[0] / (g * PREPROCESS_P), grad_features[1] * math.exp(PREPROCESS_P)
            )
            grad_g = from_features.addcmul_(grad_step, out[0])
        return grad_g, grad_features[2], grad_first, grad_second.t(), grad_out.sum(dim=1, keepdim=True)


def _hidden(first: torch.Tensor, features: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The rule's hidden layer ``relu(first^T features)`` of one block, written into ``values`` (reused)."""
    hidden = values[: first.shape[1] * features.shape[1]].view(first.shape[1], features.shape[1])
    return torch.mm(first.t(), features, out=hidden).relu_()


def _blocks(g: torch.Tensor, hidden: int) -> list[slice]:
    """Column blocks of the coordinates: one on an accelerator, else :data:`BLOCK_VALUES` hidden values each."""
    n = g.shape[0]
    size = max(1, BLOCK_VALUES // hidden) if g.device.type == "cpu" else n
    return [slice(s, s + size) for s in range(0, n, size)]


def rule_updates(
    rule: Weights, grads: list[torch.Tensor], values: list[torch.Tensor], progress: float, inner_lr: float
) -> list[torch.Tensor]:
    """The steps ``inner_lr * (a * g + b)`` of every coordinate of ``values`` (each ``[tasks, ...]``).

    ``progress`` is the inner step number over the trained steps. All coordinates of all tasks go
    through the rule network together (:class:`_RuleStep`).
    """
    tasks = grads[0].shape[0]
    g = torch.cat([t.reshape(tasks, -1) for t in grads], dim=1).view(-1)
    value = torch.cat([t.reshape(tasks, -1) for t in values], dim=1).view(-1)
    # The progress feature is the same for every coordinate: its term joins the first layer's bias. The
    # inner rate scales the output layer.
    w0 = rule["w0"]
    first = torch.cat([w0[: FEATURES - 1], rule["b0"] + progress * w0[FEATURES - 1 :]])
    step = _RuleStep.apply(g, value, first, rule["w1"] * inner_lr, (rule["b1"] * inner_lr).t())
    return [s.view_as(t) for s, t in zip(step.view(tasks, -1).split([t[0].numel() for t in grads], dim=1), grads)]
