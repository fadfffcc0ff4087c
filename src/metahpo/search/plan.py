"""The rungs of a multi-fidelity search: their budgets, and why a plan is degenerate.

Kept apart from :mod:`metahpo.search.rungs` (which needs the trial log) so that params validation can
refuse a degenerate plan without importing the search.
"""

from __future__ import annotations

import math


def rung_iterations(iterations: int, min_iterations: int, eta: int) -> list[int]:
    """Iterations of every rung: ``min_iterations * eta**k`` below ``iterations``, then ``iterations``.

    A rung within a factor ``sqrt(eta)`` of ``iterations`` is merged into the last rung (33, 99, 297 and
    300 become 33, 99 and 300): a rung that trains almost nothing more would only multiply the trials.
    """
    rungs, budget = [], min_iterations
    while budget < iterations:
        rungs.append(budget)
        budget *= eta
    if rungs and iterations < rungs[-1] * math.sqrt(eta):
        rungs.pop()
    return [*rungs, iterations]


def snapped_rung(iterations: int, min_iterations: int, eta: int) -> int | None:
    """The rung :func:`rung_iterations` merged into the last one, or None."""
    below = rung_iterations(iterations, min_iterations, eta)[:-1]
    unsnapped = min_iterations * eta ** len(below)
    return unsnapped if unsnapped < iterations else None


def plan_problems(iterations: int, min_iterations: int, eta: int, names: tuple[str, str, str]) -> list[str]:
    """Why a rung plan is degenerate (one line each, naming the key), or nothing.

    ``names`` are the keys of ``iterations``, ``min_iterations`` and ``eta`` in the caller's words.
    """
    full, first, ratio = names
    if eta < 2:
        return [f"{ratio}: expected an integer >= 2, got {eta}"]
    if min_iterations < 1:
        return [f"{first}: expected an integer >= 1, got {min_iterations}"]
    if iterations < min_iterations:
        return [f"{full}: {iterations} is below the first rung ({first}: {min_iterations})"]
    if len(rung_iterations(iterations, min_iterations, eta)) < 2:
        return [
            f"{first}: {min_iterations} with {ratio}: {eta} leaves a single rung below {full} ({iterations}); "
            f"expected at most {iterations / math.sqrt(eta):.0f} so that some trials stop early"
        ]
    return []
