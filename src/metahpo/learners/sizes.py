"""How many numbers a network holds: the one count behind the cost model and the memory guard."""

from __future__ import annotations

from metahpo.learners.conv import feature_count
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
