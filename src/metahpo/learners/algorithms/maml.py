"""MAML: Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks" (ICML).

Every weight adapts to a task by gradient steps at ``inner_lr`` on its support set, and the meta-gradient
differentiates through those steps (second order). The defaults of :class:`Algorithm` are this learner's.

Example:
    >>> from metahpo.learners.algorithms.registry import algorithm
    >>> maml = algorithm("maml")
    >>> maml.adapts, maml.second_order, maml.takes_steps
    ('all', True, True)
"""

from __future__ import annotations

from metahpo.learners.algorithms.base import STEP_KEYS, Algorithm


class MAML(Algorithm):
    """Second-order MAML: an initialisation adapted by plain gradient steps."""

    name = "maml"
    label = "MAML"
    reference = "Finn et al. 2017"
    lslr = True
    reads = (*STEP_KEYS, "inner_rates", "first_order_fraction")
    # Li et al. 2017 (Meta-SGD), Table 1; sources quote MAML differently, so a range where they differ.
    one_step_sinusoid = {5: (1.13, 1.13, 0.18), 10: (0.77, 0.85, None), 20: (0.48, 0.71, None)}
