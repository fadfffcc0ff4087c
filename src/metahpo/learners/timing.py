"""The final training's time, predicted before it starts and measured when it ends.

The prediction uses the cost model's multiply-adds (:func:`metahpo.learners.cost.setting_macs`) and the
search's own trials on this machine: their wall-clock seconds (``trial_seconds.csv``) fitted as a
fixed cost per iteration, a cost per multiply-add and a cost per validation (:func:`fit_seconds`), then
evaluated at the learner's final-training iterations with its validations. Seconds are
wall-clock and differ from run to run, so they go to ``reports/train/timing.json`` and never into a file
that must be byte-identical.
"""

from __future__ import annotations

import csv
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from metahpo import paths
from metahpo.atomic import write_json
from metahpo.json_files import parse_json
from metahpo.learners.cost import setting_macs, trained_iterations
from metahpo.learners.settings import apply_point, default_setting
from metahpo.params import Params

TRAINED = ("ok", "stopped", "pending")  # statuses of trials whose seconds are all training


def fit_seconds(params: Params, trials: Path = paths.TRIALS, seconds: Path = paths.TRIAL_SECONDS):
    """``(coefficients, trials fitted)`` of a search's timings, or ``(None, 0)`` without usable ones.

    Each trained trial's wall-clock seconds are fitted, by non-negative least squares, as
    ``per_validation + per_iteration × iterations + per_mac × multiply-adds`` (per training): a trial
    ends with one validation (its objective), every iteration pays a fixed overhead (kernel launches,
    sampling, the optimiser) that dominates small networks, and the multiply-adds dominate large ones.
    """
    try:
        with open(seconds, encoding="utf-8", newline="") as fh:
            took = {int(r["trial"]): float(r["seconds"]) for r in csv.DictReader(fh)}
        with open(trials, encoding="utf-8", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["status"] in TRAINED and took.get(int(r["trial"]), 0) > 0]
        trainings = params.search.repeats * params.search.class_folds
        design, spent = [], []
        for r in rows:
            iterations = trained_iterations(apply_point(params, parse_json(r["point"])), params, int(r["iterations"]))
            design.append([1.0, iterations, iterations * int(r["cost_macs"])])
            spent.append(took[int(r["trial"])] / trainings)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, csv.Error):  # a damaged log: no prediction
        return None, 0
    if not rows:
        return None, 0
    coefficients = nonnegative_least_squares(np.array(design), np.array(spent))
    return dict(zip(("per_validation", "per_iteration", "per_mac"), coefficients.tolist())), len(rows)


def nonnegative_least_squares(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The coefficients >= 0 that fit ``design @ x`` to ``target`` best: least squares on every subset of columns.

    Exact for the few columns of a timing fit (2^columns small solves); the columns are scaled to their
    largest value first so that the solves are well conditioned.
    """
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    scaled, best, best_residual = design / scale, np.zeros(design.shape[1]), float(np.sum(target**2))
    for size in range(1, design.shape[1] + 1):
        for columns in itertools.combinations(range(design.shape[1]), size):
            x = np.linalg.lstsq(scaled[:, columns], target, rcond=None)[0]
            residual = float(np.sum((scaled[:, columns] @ x - target) ** 2))
            if (x >= 0).all() and residual < best_residual - 1e-12:
                best, best_residual = np.zeros(design.shape[1]), residual
                best[list(columns)] = x
    return best / scale


def predict(
    settings: dict[str, dict], iterations: dict[str, int], params: Params, names: tuple[str, ...] = ("tuned", "default")
) -> dict:
    """Each named learner's cost and predicted seconds for its ``iterations``, printed before training.

    The prediction is the fit of :func:`fit_seconds` at the learner's iterations of its cost plus one
    validation every ``train.log_every`` iterations.
    """
    fit, count = fit_seconds(params)
    baseline = setting_macs(default_setting(params), params)
    out = {}
    for name in names:
        cost = setting_macs(settings[name], params)
        validations = max(1, iterations[name] // params.train.log_every)
        seconds = None
        if fit is not None:
            per_iteration = fit["per_iteration"] + cost * fit["per_mac"]
            seconds = validations * fit["per_validation"] + iterations[name] * per_iteration
        out[name] = {"cost_macs": cost, "cost_vs_untuned": round(cost / baseline, 4), "predicted_seconds": seconds}
        basis = (
            f"fitted on {count} search trials: {fit['per_iteration'] * 1e3:.3g} ms per iteration + "
            f"{fit['per_mac'] * 1e9:.3g} ns per multiply-add + {fit['per_validation']:.3g} s per validation"
            if fit is not None
            else "no search trial timings to predict from"
        )
        when = "" if seconds is None else f"about {seconds / 60:.1f} min for "
        print(f"{name}: predicted {when}{iterations[name]:,} iterations of {cost / 1e6:,.1f} M multiply-adds "
              f"({out[name]['cost_vs_untuned']:.2f}x the untuned setting's; {basis})", file=sys.stderr)  # fmt: skip
    return {"fit": fit, "from_trials": count, "learners": out}


def timed(fn, *args):
    """``(fn(*args), wall seconds it took)``: runs in a training worker."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def write_timing(folder: Path, predicted: dict, measured: dict[str, float]) -> None:
    """``folder/timing.json``: every learner's measured seconds beside the predicted ones."""
    learners = {
        name: {**predicted["learners"].get(name, {}), "seconds": round(took, 3)} for name, took in measured.items()
    }
    for name, entry in learners.items():
        if entry.get("predicted_seconds") is not None:
            minutes = entry["seconds"] / 60, entry["predicted_seconds"] / 60
            print(f"{name}: trained in {minutes[0]:.1f} min, predicted {minutes[1]:.1f}", file=sys.stderr)
    write_json(folder / paths.TIMING, {**{k: v for k, v in predicted.items() if k != "learners"}, **learners})
