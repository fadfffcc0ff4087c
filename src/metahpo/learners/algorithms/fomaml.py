"""First-order MAML: Finn et al. 2017, section 5.2, the approximation that drops the second derivatives.

MAML's inner steps, with the inner gradients treated as constants by the meta-gradient: cheaper per step
(no backward through the inner backward passes), and MAML++'s derivative-order annealing has nothing to do.
"""

from __future__ import annotations

from metahpo.learners.algorithms.base import STEP_KEYS, Algorithm


class FirstOrderMAML(Algorithm):
    """MAML without differentiating through the inner updates."""

    name = "fomaml"
    label = "first-order MAML"
    reference = "Finn et al. 2017"
    first_order = True
    lslr = True
    reads = (*STEP_KEYS, "inner_rates")
