"""A conditional neural process: Garnelo et al. 2018, "Conditional Neural Processes" (ICML).

Model-based: it adapts by conditioning on the support set (:mod:`metahpo.learners.cnp`), with no inner
step and no per-task weights, so its cost and memory are its encoder's and decoder's.
"""

from __future__ import annotations

import math

import torch

from metahpo.learners.algorithms.base import Algorithm
from metahpo.learners.cnp import cnp_outputs, cnp_sizes, init_cnp_weights
from metahpo.learners.mlp import Weights
from metahpo.learners.sizes import layer_macs, linear_count


def cnp_macs(setting: dict, support: int, query: int, side: int = 1, outputs: int = 1) -> int:
    """Multiply-adds of a conditional neural process on one task: encode the support, decode the queries."""
    hidden, layers, representation = setting["hidden"], setting["layers"], setting["representation"]
    regression = outputs == 1
    encode = sum(layer_macs(hidden, layers, "mlp", side + (1 if regression else 0), representation))
    decode = sum(layer_macs(hidden, layers, "mlp", side + representation, 1))
    return support * encode + query * (1 if regression else outputs) * decode


def cnp_step_values(setting: dict, points: int, in_features: int, outputs: int) -> int:
    """Values a CNP's meta-step keeps per task: weights, and the activations of ``points`` points."""
    hidden, layers, representation = setting["hidden"], setting["layers"], setting["representation"]
    params = sum(linear_count(s) for s in cnp_sizes(hidden, layers, representation, in_features, outputs))
    per_point = hidden * layers + representation + outputs * (hidden * layers + 1)
    return 3 * (params + points * per_point)


class CNP(Algorithm):
    """An encoder and a decoder MLP shared by every task; the support set enters through the representation."""

    name = "cnp"
    kind = "cnp"
    label = "CNP"
    reference = "Garnelo et al. 2018"
    takes_steps = False
    adapts = "none"
    adapts_by = "conditioning on the support set"
    per_task_weights = False
    architectures = ("mlp",)  # its encoder and decoder are MLPs
    reads = ("representation",)

    def initial_weights(self, config, generator: torch.Generator, device) -> Weights:
        """The encoder's and the decoder's weights (an MLP whatever ``arch`` says)."""
        in_features = math.prod(config.input_shape)
        return init_cnp_weights(
            config.hidden, config.layers, config.representation, in_features, config.outputs, generator, device
        )

    def query_outputs(self, learner, fast: Weights, support_x, support_y, query_x) -> torch.Tensor:
        """The decoder's outputs given the support set's representation; ``fast`` is not read."""
        ways = learner.config.outputs if learner.classifies else None
        return cnp_outputs(learner.shared_weights(), support_x, support_y, query_x, ways)

    def task_macs(self, setting: dict, support: int, query: int, arch: str, side: int, outputs: int) -> int:
        """Encode and decode forward, then back-propagate: ``3 (E(S) + D(Q))``."""
        return 3 * cnp_macs(setting, support, query, side, outputs)

    def task_values(self, setting: dict, points: int, arch: str, side: int, outputs: int) -> int:
        """Encoder's and decoder's weights and activations (the decoder's once per class), three times over."""
        return cnp_step_values(setting, points, side, outputs)
