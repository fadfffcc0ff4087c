"""The final training's time, predicted before it starts and measured when it ends.

The prediction is the cost model's multiply-adds (:func:`metahpo.learners.cost.setting_macs`) times
``train.iterations``, at the seconds per multiply-add the search's own trials took on this machine: the
sum of their wall-clock seconds (``trial_seconds.csv``) over the sum of the multiply-adds they trained
(each trial's cost per iteration times the iterations it trained, times its trainings). Validations on
meta_val during training are not counted, so it errs low when ``train.log_every`` is small. Seconds are
wall-clock and differ from run to run, so they go to ``reports/train/timing.json`` and never into a file
that must be byte-identical.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from metahpo import paths
from metahpo.atomic import write_json
from metahpo.learners.cost import setting_macs, trained_iterations
from metahpo.learners.settings import apply_point, default_setting
from metahpo.params import Params

TRAINED = ("ok", "stopped", "pending")  # statuses of trials whose seconds are all training


def seconds_per_mac(params: Params, trials: Path = paths.TRIALS, seconds: Path = paths.TRIAL_SECONDS):
    """``(seconds per multiply-add, trials it is measured over)`` from a search's log, or ``(None, 0)``."""
    try:
        with open(seconds, encoding="utf-8", newline="") as fh:
            took = {int(r["trial"]): float(r["seconds"]) for r in csv.DictReader(fh)}
        with open(trials, encoding="utf-8", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["status"] in TRAINED and took.get(int(r["trial"]), 0) > 0]
        trainings = params.search.repeats * params.search.class_folds
        macs = sum(
            int(r["cost_macs"]) * trained_iterations(apply_point(params, json.loads(r["point"])), params,
                                                     int(r["iterations"])) * trainings
            for r in rows
        )  # fmt: skip
        spent = sum(took[int(r["trial"])] for r in rows)
    except (OSError, ValueError, KeyError, TypeError, csv.Error):  # an old or damaged log only costs the prediction
        return None, 0
    return (spent / macs, len(rows)) if macs > 0 else (None, 0)


def predict(settings: dict[str, dict], params: Params, names: tuple[str, ...] = ("tuned", "default")) -> dict:
    """Each named learner's cost and predicted seconds for ``train.iterations``, printed before training."""
    rate, count = seconds_per_mac(params)
    baseline = setting_macs(default_setting(params), params)
    out = {}
    for name in names:
        cost = setting_macs(settings[name], params)
        seconds = None if rate is None else params.train.iterations * cost * rate
        out[name] = {"cost_macs": cost, "cost_vs_untuned": round(cost / baseline, 4), "predicted_seconds": seconds}
        basis = (
            f"{rate * 1e9:.3g} ns per multiply-add over {count} search trials"
            if rate is not None
            else "no search trial timings to predict from"
        )
        when = "" if seconds is None else f"about {seconds / 60:.1f} min for "
        print(f"{name}: predicted {when}{params.train.iterations:,} iterations of {cost / 1e6:,.1f} M multiply-adds "
              f"({out[name]['cost_vs_untuned']:.2f}x the untuned setting's; {basis})", file=sys.stderr)  # fmt: skip
    return {"seconds_per_mac": rate, "from_trials": count, "learners": out}


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
