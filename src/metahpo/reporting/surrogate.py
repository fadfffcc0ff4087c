"""The search's GP surrogate refitted on its trial log, for scikit-optimize's plots."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import skopt

from metahpo.json_files import parse_json
from metahpo.params import SearchParams
from metahpo.search.proposers import build_space
from metahpo.search.rungs import reached, rung_iterations
from metahpo.search.trial_log import SMALLEST_TOLD


def surrogate_data(trials: pd.DataFrame, search: SearchParams) -> tuple[list[list], list[float], str]:
    """Points and told values the report's GP is fitted to, and which trials they are, in words.

    A single-fidelity search: every trial as told (log objective, penalties included). A multi-fidelity
    one: the trials of the highest rung that at least dimensions + 1 trials reached, as the search's own
    surrogate is fitted, since values of different rungs are not comparable.
    """
    names = list(search.space)
    rows = {
        int(r.trial): {"point": parse_json(r.point), "rungs": parse_json(r.rungs, finite=False), "status": r.status,
                       "iterations": int(r.iterations), "told": float(r.told)}
        for r in trials.itertuples()
    }  # fmt: skip
    chosen, note, iterations = sorted(rows), "all trials", None
    if search.fidelity != "none":
        for iterations in reversed(rung_iterations(search.iterations, search.min_iterations, search.eta)):
            chosen = [t for t in sorted(rows) if reached(rows[t], iterations)]
            if len(chosen) >= len(names) + 1:
                break
        enough = len(names) + 1
        where = f"the highest rung that at least {enough} reached" if len(chosen) >= enough else "the first rung"
        note = f"the {len(chosen)} trials that reached {iterations:,} iterations, {where}"
    values = []
    for t in chosen:
        rung = rows[t]["rungs"].get(str(iterations)) if iterations else None
        values.append(math.log(max(statistics.fmean(rung), SMALLEST_TOLD)) if rung else rows[t]["told"])
    return [[rows[t]["point"][n] for n in names] for t in chosen], values, note


def surrogate_result(trials: pd.DataFrame, search: SearchParams, seed: int):
    """A GP fitted to :func:`surrogate_data`, for skopt's plots."""
    points, values, _ = surrogate_data(trials, search)
    optimizer = skopt.Optimizer(
        build_space(search.space), base_estimator="GP", n_initial_points=1, acq_optimizer="sampling",
        random_state=seed,
    )  # fmt: skip
    optimizer.tell(points, values)
    return optimizer.get_result()
