"""A learned optimizer: Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient descent".

The few-shot form of Ravi & Larochelle 2017: MAML's initialisation adapted by a coordinatewise update rule,
a small MLP (:mod:`metahpo.learners.learned_rule`) meta-learned with it. ``learned_optimizer`` differentiates
through the inner updates (second order); ``learned_optimizer_fo`` treats the inner gradients as constants, as
Andrychowicz et al. do.
"""

from __future__ import annotations

import torch

from metahpo.learners.algorithms.base import STEP_KEYS, Algorithm
from metahpo.learners.learned_rule import FEATURES, init_rule_weights, rule_updates
from metahpo.learners.mlp import Weights
from metahpo.learners.sizes import weight_count


class LearnedOptimizer(Algorithm):
    """Inner steps of a learned update rule (second order)."""

    name = "learned_optimizer"
    kind = "learned_optimizer"
    label = "learned optimizer"
    reference = "Andrychowicz et al. 2016"
    adapts_by = "steps of a learned coordinatewise update rule"
    reads = (*STEP_KEYS, "rule_hidden", "first_order_fraction")

    def rule_weights(self, config, generator: torch.Generator, device) -> Weights:
        """The update rule's MLP, ``meta.rule_hidden`` hidden units, SGD at ``inner_lr`` before training."""
        return init_rule_weights(config.rule_hidden, generator, device)

    def step(self, learner, current: list[torch.Tensor], grads: list[torch.Tensor], step: int) -> list[torch.Tensor]:
        """Each coordinate moves by the rule's output, fed the step as a fraction of the trained steps."""
        progress = step / learner.config.inner_steps
        updates = rule_updates(dict(learner.rule._parameters), grads, current, progress, learner.config.inner_lr)
        return torch._foreach_sub(current, updates)

    def rule_macs(self, setting: dict, arch: str, side: int, outputs: int) -> int:
        """The rule's MLP on every weight coordinate at every step, forward and backward: ``3 W R`` per step."""
        rule = FEATURES * setting["rule_hidden"] + setting["rule_hidden"] * 2
        coordinates = weight_count(setting["hidden"], setting["layers"], arch, side, outputs)
        return setting["inner_steps"] * 3 * coordinates * rule

    def rule_values(self, setting: dict, params: int) -> int:
        """The rule's features, hidden units and outputs per coordinate, three times over."""
        return 3 * params * (FEATURES + 2 * setting["rule_hidden"] + 2)


class FirstOrderLearnedOptimizer(LearnedOptimizer):
    """The learned optimizer with the inner gradients treated as constants (Andrychowicz et al.'s form)."""

    name = "learned_optimizer_fo"
    label = "learned optimizer (first order)"
    first_order = True
    reads = (*STEP_KEYS, "rule_hidden")
