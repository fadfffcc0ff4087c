"""The MAML family: MAML, first-order MAML and Meta-SGD, which adapt every weight by gradient steps.

* MAML: Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks" (ICML). Every
  weight adapts to a task by gradient steps at ``inner_lr`` on its support set, and the meta-gradient
  differentiates through those steps (second order). The defaults of :class:`Algorithm` are this learner's.
* first-order MAML: Finn et al. 2017, section 5.2, MAML's inner steps with the inner gradients treated as
  constants by the meta-gradient.
* Meta-SGD: Li et al. 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning": one inner learning
  rate per parameter, meta-learned with the initialisation.

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


class FirstOrderMAML(Algorithm):
    """MAML without differentiating through the inner updates."""

    name = "fomaml"
    label = "first-order MAML"
    reference = "Finn et al. 2017"
    first_order = True
    lslr = True
    reads = (*STEP_KEYS, "inner_rates")


class MetaSGD(Algorithm):
    """Second-order MAML whose inner step multiplies each gradient by its own learned rate."""

    name = "metasgd"
    label = "Meta-SGD"
    reference = "Li et al. 2017"
    lslr = True
    per_parameter_rates = True
    reads = (*STEP_KEYS, "inner_rates", "first_order_fraction")
    # Li et al. 2017, Table 1.
    one_step_sinusoid = {5: (0.90, 0.90, 0.16), 10: (0.53, 0.53, 0.09), 20: (0.31, 0.31, 0.05)}

