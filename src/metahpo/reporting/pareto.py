"""The Pareto front of the search's trials: cost against objective."""

from __future__ import annotations

import math


def pareto_front(costs: list[float], values: list[float]) -> list[int]:
    """Indices of the points no other point beats in both cost and value (lower is better), by rising cost."""
    front, best = [], math.inf
    for i in sorted(range(len(costs)), key=lambda i: (costs[i], values[i], i)):
        if values[i] < best:
            front.append(i)
            best = values[i]
    return front
