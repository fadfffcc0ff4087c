"""Prototypical networks: Snell et al. 2017, "Prototypical Networks for Few-shot Learning" (NeurIPS).

Metric-based, and a classification baseline that the search does not choose: each query is classified by
its distance to the class means ("prototypes") of the support embeddings, which are the network's
features before its last layer. It takes no inner step.
"""

from __future__ import annotations

import torch

from metahpo.learners.algorithms.base import Algorithm
from metahpo.learners.cnp import class_means
from metahpo.learners.mlp import Weights
from metahpo.learners.sizes import layer_macs


def prototype_logits(support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, ways: int) -> torch.Tensor:
    """Negative squared distances ``[tasks, query points, ways]`` from query embeddings to class means."""
    prototypes = class_means(support, support_y, ways)
    return -(query.unsqueeze(2) - prototypes.unsqueeze(1)).pow(2).sum(dim=-1)


class ProtoNet(Algorithm):
    """Negative squared distances to the class means of the support embeddings, as logits."""

    name = "protonet"
    kind = "metric"
    label = "prototypical network"
    reference = "Snell et al. 2017"
    searched = False
    takes_steps = False
    adapts = "none"
    adapts_by = "distances to class means"

    def query_outputs(self, learner, fast: Weights, support_x, support_y, query_x) -> torch.Tensor:
        """Prototype scores of the query points."""
        return prototype_logits(
            learner.embed(fast, support_x), support_y, learner.embed(fast, query_x), learner.config.outputs
        )

    def task_macs(self, setting: dict, support: int, query: int, arch: str, side: int, outputs: int) -> int:
        """Embed support and query once and back-propagate: ``3 (F(S) + F(Q))``."""
        per_point = sum(layer_macs(setting["hidden"], setting["layers"], arch, side, outputs))
        return 3 * (support * per_point + query * per_point)
