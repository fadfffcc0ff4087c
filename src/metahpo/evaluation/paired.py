"""The tuned learner against every other row, task by task: paired differences on the same held-out tasks.

Each row's own 95% CI (1.96·std/√n over the tasks) carries how hard the tasks are for every learner. All rows
are scored on the same stored meta_test tasks, so the difference of two rows is judged better task by task:
the CI of the per-task differences removes the spread the two share, and can separate two learners whose own
CIs overlap. ``evaluation.json`` holds, under ``paired``, one entry per row other than the tuned learner, at
the headline setting (K = ``tasks.shots``, after each learner's trained steps; the reference row as it is):
the mean of tuned minus that row, its 95% half-width, and the tasks on which the tuned value is larger and
smaller. Where either side has no per-task values (its headline step diverged, or its trained steps lie past
``evaluate.max_steps``) or fewer than two tasks, the statistics are null.
"""

from __future__ import annotations

import math

import numpy as np

from metahpo.learners.adaptation import Z_95

PER_TASK = "per_task"  # the key under which a scorer hands back its headline values, one per task
LEARNER = "tuned"
EMPTY = {"mean": None, "ci95": None, "larger": None, "smaller": None}


def paired_difference(first, second) -> dict:
    """Mean and 95% half-width of ``first - second`` task by task; the tasks where ``first`` is larger, smaller."""
    if first is None or second is None:
        return dict(EMPTY)
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"paired values must be one per task, the same tasks: shapes {first.shape}, {second.shape}")
    diff = first - second
    if diff.size < 2 or not np.isfinite(diff).all():
        return dict(EMPTY)
    ci = Z_95 * float(diff.std(ddof=1)) / math.sqrt(diff.size)
    return {"mean": float(diff.mean()), "ci95": ci, "larger": int((diff > 0).sum()), "smaller": int((diff < 0).sum())}


def split_per_task(results: dict[str, tuple]) -> tuple[dict[str, tuple], dict[str, list | None]]:
    """``(results without per-task values, {name: per-task values})``; entries shared by twins stay untouched."""
    kept, per_task = {}, {}
    for name, (entry, plots) in results.items():
        per_task[name] = entry.get(PER_TASK)
        kept[name] = ({k: v for k, v in entry.items() if k != PER_TASK}, plots)
    return kept, per_task


def paired_section(per_task: dict[str, list | None], rows: list[str]) -> dict[str, dict]:
    """``{row: paired_difference(tuned, row)}`` for each of ``rows`` other than the tuned learner."""
    return {name: paired_difference(per_task.get(LEARNER), per_task.get(name)) for name in rows if name != LEARNER}


def headline_values(values: np.ndarray, stat: dict | None, value: str) -> list[float] | None:
    """The per-task values of one headline cell, or None where its summary has no value (diverged)."""
    return None if stat is None or stat.get(value) is None else np.asarray(values, dtype=np.float64).tolist()
