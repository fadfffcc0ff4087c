"""Proto-MAML: Triantafillou et al. 2020, "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few
Examples" (ICLR), section 4.

MAML whose last layer starts every task as a prototypical network: class ``k``'s head weights are
``2 c_k`` and its bias ``-|c_k|^2``, where ``c_k`` is the mean support embedding of class ``k``, so before
any step the logits equal the prototypical network's up to a term shared by all classes. The inner steps
then adapt every weight, as MAML's do, and the meta-gradient also flows through the prototypes into the
body. The shared head, which starts at zero, is added to the prototypes' head and meta-learned with the
rest. Image classification only (the conv net): prototypes need classes.
"""

from __future__ import annotations

import torch

from metahpo.learners.algorithms.base import STEP_KEYS, Algorithm
from metahpo.learners.cnp import class_means
from metahpo.learners.mlp import Weights, expand_to_tasks
from metahpo.learners.sizes import conv_activations


def prototype_head(features: torch.Tensor, labels: torch.Tensor, ways: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The head ``([tasks, features, ways], [tasks, 1, ways])`` whose logits are negative squared distances.

    ``-|q - c_k|^2 = 2 q.c_k - |c_k|^2 - |q|^2``, and the last term is the same for every class.
    """
    prototypes = class_means(features, labels, ways)
    return 2 * prototypes.transpose(1, 2), -prototypes.pow(2).sum(dim=-1).unsqueeze(1)


class ProtoMAML(Algorithm):
    """MAML with each task's head initialised from its support set's class means."""

    name = "protomaml"
    label = "Proto-MAML"
    reference = "Triantafillou et al. 2020"
    lslr = True
    architectures = ("conv",)
    adapts_by = "gradient steps on the support set, from a head made of its class means"
    reads = (*STEP_KEYS, "inner_rates", "first_order_fraction")

    def initial_weights(self, config, generator: torch.Generator, device) -> Weights:
        """MAML's network with a zero head, so that a task starts exactly at its prototypes' head."""
        weights = super().initial_weights(config, generator, device)
        return {**weights, "head_w": torch.zeros_like(weights["head_w"]), "head_b": torch.zeros_like(weights["head_b"])}

    def task_start(self, learner, fast: Weights, support_x, support_y) -> Weights:
        """Each task's weights before its first step: the shared head plus the support set's prototype head.

        The prototypes come from their own view of the shared weights, so an inner step's gradient treats the
        head as a weight of its own (as Proto-MAML's fine-tuning does), while the meta-gradient reaches the
        body through the prototypes too.
        """
        body = expand_to_tasks(learner.shared_weights(), support_x.shape[0])
        head_w, head_b = prototype_head(learner.embed(body, support_x), support_y, learner.config.outputs)
        return {**fast, "head_w": fast["head_w"] + head_w, "head_b": fast["head_b"] + head_b}

    def inner_macs(self, support: int, per_point: int, head: int, steps: int) -> int:
        """MAML's steps and one more forward pass over the support set for the prototypes."""
        return super().inner_macs(support, per_point, head, steps) + support * (per_point - head)

    def task_values(self, setting: dict, points: int, arch: str, side: int, outputs: int) -> int:
        """MAML's, and the prototype pass's activations, kept for the meta-gradient (``points`` bounds the support)."""
        prototypes = points * conv_activations(setting["hidden"], setting["layers"], side)
        return super().task_values(setting, points, arch, side, outputs) + prototypes
