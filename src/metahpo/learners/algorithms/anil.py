"""ANIL: Raghu et al. 2020, "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of MAML".

Almost No Inner Loop: only the last layer adapts to a task (second order); the body is meta-learned and
shared, so an inner step costs the head's share of the network.
"""

from __future__ import annotations

from metahpo.learners.algorithms.base import STEP_KEYS, Algorithm


class ANIL(Algorithm):
    """MAML whose inner steps change the head only."""

    name = "anil"
    label = "ANIL"
    reference = "Raghu et al. 2020"
    adapts = "head"
    lslr = True
    reads = (*STEP_KEYS, "inner_rates", "first_order_fraction")

    def inner_macs(self, support: int, per_point: int, head: int, steps: int) -> int:
        """The body runs once on the support set; each step is a forward and backward pass of the head."""
        return support * (per_point - head) + steps * 3 * support * head
