"""The standard 4-block convolutional network of few-shot classification, with a task dimension.

Each block is a 3x3 convolution, batch normalisation, ReLU and 2x2 max-pooling (skipped once the
feature map is 1x1, so small images such as 8x8 digits fit four blocks); a linear head follows.
Batch normalisation always uses the statistics of the batch at hand, per task, and keeps no running
statistics: tasks never share them, as in MAML. Weights carry a leading task dimension like the MLP's;
the tasks' convolutions run as one grouped convolution (``groups = tasks``), never a loop over tasks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from metahpo.learners.mlp import Weights


def feature_side(image_side: int, blocks: int) -> int:
    """Side of the last feature map: halved by each block's pooling while larger than 1."""
    for _ in range(blocks):
        if image_side > 1:
            image_side //= 2
    return image_side


def feature_count(width: int, blocks: int, image_side: int) -> int:
    """Features entering the linear head."""
    return width * feature_side(image_side, blocks) ** 2


def _uniform(shape, bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def init_conv_weights(
    width: int, blocks: int, image_side: int, outputs: int, generator: torch.Generator, device="cpu"
) -> Weights:
    """Initialise like ``torch.nn`` (uniform in ±1/sqrt(fan_in); batch-norm scale 1, shift 0), reproducibly."""
    weights: dict[str, torch.Tensor] = {}
    channels = 1
    for i in range(blocks):
        weights[f"conv{i}"] = _uniform((width, channels, 3, 3), 1 / math.sqrt(9 * channels), generator)
        weights[f"scale{i}"] = torch.ones(width, dtype=torch.float64)
        weights[f"shift{i}"] = torch.zeros(width, dtype=torch.float64)
        channels = width
    features = feature_count(width, blocks, image_side)
    weights["head_w"] = _uniform((features, outputs), 1 / math.sqrt(features), generator)
    weights["head_b"] = _uniform((1, outputs), 1 / math.sqrt(features), generator)
    return {k: v.to(device=device, dtype=torch.float32) for k, v in weights.items()}


def conv_features(weights: Weights, x: torch.Tensor) -> torch.Tensor:
    """Flattened features ``[tasks, points, features]`` of images ``x`` ``[tasks, points, height, width]``."""
    tasks, points = x.shape[:2]
    # Tasks become channel groups: [points, tasks * channels, height, width].
    h = x.transpose(0, 1).reshape(points, tasks, *x.shape[2:])
    blocks = sum(1 for name in weights if name.startswith("conv"))
    for i in range(blocks):
        kernel = weights[f"conv{i}"]
        h = F.conv2d(h, kernel.reshape(-1, *kernel.shape[2:]), padding=1, groups=tasks)
        h = F.batch_norm(
            h, None, None, weights[f"scale{i}"].reshape(-1), weights[f"shift{i}"].reshape(-1), training=True
        )
        # ReLU and max-pooling commute exactly (values and gradients); pooling first quarters the ReLU's work.
        if min(h.shape[-2:]) > 1:
            h = F.max_pool2d(h, 2)
        h = torch.relu(h)
    return h.reshape(points, tasks, -1).transpose(0, 1)


def conv_forward(weights: Weights, x: torch.Tensor) -> torch.Tensor:
    """Class scores ``[tasks, points, outputs]``."""
    return torch.baddbmm(weights["head_b"], conv_features(weights, x), weights["head_w"])
