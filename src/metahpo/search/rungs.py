"""Multi-fidelity search: successive halving and Hyperband over rungs of meta-training iterations.

Rung ``k`` trains a setting for ``min_iterations * eta**k`` iterations; the last rung is
``search.iterations``. A bracket starts ``n`` trials at one rung; after each rung the best
``max(1, n // eta)`` of them (by objective, ties by trial number; failed trials never) are promoted to the
next rung and the others stop there. A promoted trial continues its training from the state it reached
(weights, optimiser, schedule position and sampling generator), so its top rung is bit-identical to an
uninterrupted run of ``search.iterations``; the cosine schedule spans ``search.iterations`` throughout.

* ``successive_halving`` (Jamieson & Talwalkar 2016): every bracket starts ``eta**(rungs - 1)`` trials at
  the first rung.
* ``hyperband`` (Li et al. 2018): brackets cycle from the most aggressive (``s = rungs - 1``: many trials
  from the first rung) to plain full-length trials (``s = 0``); bracket ``s`` starts
  ``ceil(rungs / (s + 1) * eta**s)`` trials at rung ``rungs - 1 - s``.

Whole brackets run, so ``search.n_calls`` is rounded up to the end of a bracket; the brackets, the
trials and the promotions depend only on the params, never on the number of workers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from metahpo.search.plan import plan_problems, rung_iterations, snapped_rung  # noqa: F401 - re-exported
from metahpo.search.trial_log import FAILED, OK, PENDING, UNSCORED, told_values


@dataclass(frozen=True)
class Bracket:
    """Trials ``first`` .. ``first + size - 1``, started together at rung ``start``."""

    first: int
    size: int
    start: int

    @property
    def trials(self) -> range:
        """The bracket's trial numbers."""
        return range(self.first, self.first + self.size)


def bracket_shape(fidelity: str, n_rungs: int, eta: int, index: int) -> tuple[int, int]:
    """``(size, start rung)`` of the ``index``-th bracket of a search."""
    top = n_rungs - 1
    s = top if fidelity == "successive_halving" else top - index % n_rungs
    return math.ceil(n_rungs / (s + 1) * eta**s - 1e-9), top - s


def brackets(fidelity: str, n_rungs: int, eta: int, n_calls: int, most: int | None = None) -> list[Bracket]:
    """Whole brackets until they hold at least ``n_calls`` trials (``most`` caps the trials, e.g. a grid's size)."""
    out, first = [], 0
    while first < n_calls and (most is None or first < most):
        size, start = bracket_shape(fidelity, n_rungs, eta, len(out))
        if most is not None:
            size = min(size, most - first)
        out.append(Bracket(first, size, start))
        first += size
    return out


def promoted(values: dict[int, float], eta: int) -> list[int]:
    """The trials that go on to the next rung: the best ``max(1, n // eta)`` finite values, ties by trial."""
    finite = sorted((v, t) for t, v in values.items() if math.isfinite(v))
    return sorted(t for _, t in finite[: max(1, len(values) // eta)])


def planned_iterations(plan: list[Bracket], rungs: list[int], eta: int) -> int:
    """Trial-iterations of a plan if no trial fails: each trial trains once up to the last rung it reaches."""
    total = 0
    for bracket in plan:
        alive = bracket.size
        for k in range(bracket.start, len(rungs)):
            total += alive * (rungs[k] - (rungs[k - 1] if k > bracket.start else 0))
            alive = max(1, alive // eta)
    return total


def reached(row: dict, iterations: int) -> bool:
    """Whether a logged trial finished, failed at, or was refused as too costly at, the rung of ``iterations``."""
    return str(iterations) in row["rungs"] or (row["status"] in UNSCORED and row["iterations"] == iterations)


def as_of(row: dict, iterations: int) -> dict:
    """A logged trial as it stood when it finished (or failed at) the rung of ``iterations``."""
    rungs = {k: v for k, v in row["rungs"].items() if int(k) <= iterations}
    out = {**row, "rungs": rungs, "iterations": iterations}
    if str(iterations) in rungs:
        values = rungs[str(iterations)]
        out |= {"status": PENDING, "objectives": values, "objective": statistics.fmean(values), "error": ""}
    return out


def told_at(rows: dict[int, dict], iterations: int, penalty_floor: float) -> tuple[list[dict], list[float]]:
    """Points and told values of every trial that finished (or failed at) one rung, in trial order.

    The values follow the rule of :func:`metahpo.search.trial_log.told_values` among that rung's trials:
    the log of the objective, or for a failure (or a setting too costly to train) the log of the worse of
    ``penalty_floor`` and the worst value earlier trials reached there.
    """
    at = {t: as_of(row, iterations) for t, row in rows.items() if reached(row, iterations)}
    rung = {
        t: {"status": FAILED if r["status"] in UNSCORED else OK, "objective": r["objective"]} for t, r in at.items()
    }
    told_values(rung, penalty_floor)
    return [at[t]["point"] for t in sorted(at)], [rung[t]["told"] for t in sorted(at)]
