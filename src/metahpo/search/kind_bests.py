"""The best search trial of each kind of meta-learner, so that the kinds can be compared at their best.

The search tries every algorithm of ``search.space.algorithm`` and its best finished trial becomes the
tuned learner. Each other kind of meta-learner it tried (:data:`metahpo.learners.KINDS`: the MAML
family, the learned optimizer, the CNP) has a best trial of its own, chosen by the same rule from the
same trials, so on the same meta_val objective and never on meta_test: the finished trial with the
lowest objective. A kind none of whose trials finished (multi-fidelity search stopped them all) is
represented by the trial at the highest rung it reached, lowest objective first, and says so; a kind
whose every trial failed or was too costly has no best.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from metahpo.errors import ArtifactError
from metahpo.json_files import parse_json
from metahpo.learners import KINDS
from metahpo.search.trial_log import OK, STOPPED


def searched_kinds(space: dict) -> list[str]:
    """The kinds of meta-learner ``search.space.algorithm`` tries, in the order of :data:`KINDS` (none when
    the algorithm is not searched)."""
    spec = space.get("algorithm")
    algorithms = spec["values"] if spec is not None else []
    return [kind for kind, members in KINDS.items() if any(a in members for a in algorithms)]


def _candidate(row: dict, point: dict) -> dict:
    return {
        "trial": int(row["trial"]),
        "status": row["status"],
        "iterations": int(row["iterations"]),
        "objective": float(row["objective"]),
        "cost_macs": int(row["cost_macs"]),
        "point": point,
        # How far it trained: the highest rung it reached (multi-fidelity; with compute rungs, iterations differ
        # within a rung), else 0 and its iterations (stopped by the median rule).
        "reach": (max(map(int, parse_json(row["rungs"] or "{}", finite=False)), default=0), int(row["iterations"])),
    }


def kind_bests(trials: Path, kinds: list[str]) -> dict[str, dict]:
    """``{kind: best trial}`` for each of ``kinds``, read from the trial log ``trials``.

    A best trial is ``{trials_of_kind, trial, status, iterations, objective, cost_macs, point}``;
    ``status`` is ``ok`` (finished) or ``stopped`` (no trial of the kind finished: the best at the highest
    rung reached). A kind without a scored trial has ``trials_of_kind`` (failed or too costly ones) only.
    """
    try:
        with open(trials, encoding="utf-8", newline="") as fh:
            every = list(csv.DictReader(fh))
        points = [parse_json(r["point"]) for r in every]
        drawn = [point.get("algorithm") for point in points]
        rows = [_candidate(r, p) for r, p in zip(every, points) if r["status"] in (OK, STOPPED)]
    except FileNotFoundError:
        raise ArtifactError(f"{trials}: missing; run the search stage first") from None
    except (ValueError, KeyError, TypeError, AttributeError, csv.Error):
        raise ArtifactError(f"{trials}: not a readable trial log; rerun the search stage") from None
    rows = [r for r in rows if math.isfinite(r["objective"])]
    bests: dict[str, dict] = {}
    for kind in kinds:
        mine = [r for r in rows if r["point"].get("algorithm") in KINDS[kind]]
        pool = [r for r in mine if r["status"] == OK]
        if not pool and mine:
            furthest = max(r["reach"] for r in mine)
            pool = [r for r in mine if r["reach"][0] == furthest[0] and (furthest[0] > 0 or r["reach"] == furthest)]
        best = min(pool, key=lambda r: (r["objective"], r["trial"])) if pool else None
        tried = sum(algorithm in KINDS[kind] for algorithm in drawn)
        bests[kind] = {"trials_of_kind": tried, **{k: v for k, v in (best or {}).items() if k != "reach"}}
    return bests
