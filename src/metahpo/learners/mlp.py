"""A functional MLP whose weights carry a leading task dimension.

Weights live in a plain ``dict`` of tensors so that the meta-learners can hold one copy of the
initialisation and many task-specific "fast" copies without a Python loop over tasks: every layer
is a batched matrix multiply (``torch.baddbmm``) over the task dimension.
"""

from __future__ import annotations

import math

import torch

Weights = dict[str, torch.Tensor]


def layer_sizes(hidden: int, layers: int, in_features: int = 1, out_features: int = 1) -> list[int]:
    """Return the widths ``[in, hidden, ..., hidden, out]`` of an MLP with ``layers`` hidden layers."""
    return [in_features] + [hidden] * layers + [out_features]


def init_weights(sizes: list[int], generator: torch.Generator, device: torch.device | str = "cpu") -> Weights:
    """Initialise an MLP like ``torch.nn.Linear`` (uniform in ±1/sqrt(fan_in)), reproducibly."""
    weights: Weights = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_in, fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        b = (torch.rand(1, fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        weights[f"w{i}"] = w.to(device=device, dtype=torch.float32)
        weights[f"b{i}"] = b.to(device=device, dtype=torch.float32)
    return weights


def n_layers(weights: Weights) -> int:
    """Number of linear layers in ``weights``."""
    return sum(1 for name in weights if name.startswith("w"))


def expand_to_tasks(weights: Weights, n_tasks: int) -> Weights:
    """View shared weights as ``[n_tasks, ...]`` without copying (gradients flow back to them)."""
    return {name: w.expand(n_tasks, *w.shape) for name, w in weights.items()}


def forward(weights: Weights, x: torch.Tensor) -> torch.Tensor:
    """Apply the MLP to ``x`` of shape ``[tasks, points, in]`` with per-task weights ``[tasks, ...]``.

    Images ``[tasks, points, height, width]`` are flattened. Biases are stored as ``[1, out]`` rows so
    that they broadcast over points without a reshape.
    """
    depth = n_layers(weights)
    h = x.flatten(2)
    for i in range(depth):
        h = torch.baddbmm(weights[f"b{i}"], h, weights[f"w{i}"])
        if i < depth - 1:
            h = torch.relu(h)
    return h


def head_names(weights: Weights) -> tuple[str, str]:
    """Names of the last layer's weight and bias (the part ANIL adapts)."""
    last = n_layers(weights) - 1
    return f"w{last}", f"b{last}"


def output_gradient(h: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Gradient of each task's mean loss with respect to the network output ``h`` ``[tasks, points, out]``.

    ``mse``: targets ``y`` ``[tasks, points, out]``; ``cross_entropy``: class labels ``[tasks, points]``.
    """
    if loss == "mse":
        return (h - y) * (2.0 / (y.shape[1] * y.shape[2]))
    one_hot = torch.nn.functional.one_hot(y, h.shape[-1]).to(h.dtype)
    return (torch.softmax(h, dim=-1) - one_hot) / y.shape[1]


def mlp_gradients(
    weights: Weights, x: torch.Tensor, y: torch.Tensor, names: list[str], loss: str = "mse"
) -> list[torch.Tensor]:
    """Per-task gradients of the mean ``loss`` (``mse`` or ``cross_entropy``) with respect to ``names``.

    Equal to ``autograd.grad(task_loss(forward(weights, x), y).sum(), ...)`` but built by explicit
    backprop from a handful of batched matrix products, which autograd then differentiates again for
    second-order meta-gradients far more cheaply than a double backward through a generic graph. The
    ReLU mask is a constant, exactly as in autograd's own double backward (ReLU's second derivative is
    zero almost everywhere).
    """
    depth = n_layers(weights)
    inputs, masks = [], []
    h = x.flatten(2)
    for i in range(depth):
        inputs.append(h)
        h = torch.baddbmm(weights[f"b{i}"], h, weights[f"w{i}"])
        if i < depth - 1:
            masks.append(h > 0)
            h = torch.relu(h)
    delta = output_gradient(h, y, loss)
    lowest = min(int(n[1:]) for n in names)
    grads: dict[str, torch.Tensor] = {}
    for i in range(depth - 1, lowest - 1, -1):
        grads[f"w{i}"] = torch.bmm(inputs[i].transpose(1, 2), delta)
        grads[f"b{i}"] = delta.sum(dim=1, keepdim=True)
        if i > lowest:
            delta = torch.bmm(delta, weights[f"w{i}"].transpose(1, 2)) * masks[i - 1]
    return [grads[n] for n in names]
