"""Meta-SGD: Li et al. 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning".

MAML with one inner learning rate per parameter, meta-learned with the initialisation (started at
``inner_lr``); with ``inner_rates: lslr`` the rates are per parameter and per step.
"""

from __future__ import annotations

from metahpo.learners.algorithms.base import STEP_KEYS, Algorithm


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
