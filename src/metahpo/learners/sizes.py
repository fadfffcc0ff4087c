"""How many numbers a network holds and how many multiply-adds it takes: the counts behind the cost model
and the memory guard, which every learner's own terms (:mod:`metahpo.learners.algorithms`) are built from."""

from __future__ import annotations

from metahpo.learners.conv import feature_count, feature_side
from metahpo.learners.mlp import layer_sizes


def linear_count(sizes: list[int], biases: bool = True) -> int:
    """Weights (and, with ``biases``, biases) of linear layers of widths ``sizes``."""
    return sum(a * b + (b if biases else 0) for a, b in zip(sizes[:-1], sizes[1:]))


def weight_count(
    hidden: int, layers: int, arch: str = "mlp", side: int = 1, outputs: int = 1, biases: bool = False
) -> int:
    """Weights of the MLP (``side`` inputs) or conv net (``side`` x ``side`` images).

    Without ``biases``, the coordinates a learned update rule runs on; with them, every parameter (the
    biases and the conv net's batch-norm scales and shifts too), which the memory guard counts.
    """
    if arch == "conv":
        kernels = sum(9 * (hidden if b else 1) * hidden for b in range(layers))
        extra = 2 * hidden * layers + outputs if biases else 0
        return kernels + feature_count(hidden, layers, side) * outputs + extra
    return linear_count(layer_sizes(hidden, layers, side, outputs), biases)


def layer_macs(hidden: int, layers: int, arch: str = "mlp", side: int = 1, outputs: int = 1) -> list[int]:
    """Multiply-adds of each layer's forward pass for one point; the last entry is the head.

    ``side`` is the MLP's input size, or the image side for ``arch: conv`` (3x3 convolutions, each
    block's map halved by pooling while larger than 1).
    """
    if arch == "conv":  # block b convolves the map that b poolings left; the head reads the last one
        blocks = [9 * (hidden if b else 1) * hidden * feature_side(side, b) ** 2 for b in range(layers)]
        return [*blocks, feature_count(hidden, layers, side) * outputs]
    sizes = [side] + [hidden] * layers + [outputs]
    return [a * b for a, b in zip(sizes[:-1], sizes[1:])]


def conv_activations(width: int, blocks: int, side: int) -> int:
    """Values kept per image: convolution, normalisation and ReLU outputs of every block."""
    return 3 * width * sum(feature_side(side, b) ** 2 for b in range(blocks))
