"""Held-out evaluation of sinusoid regression: MSE on the grid and on K query points, per step and per K.

Metrics are nested so that DVC flattens them to ``<learner>.<split>.<points>.k<K>.step<s>.<stat>``:
``split`` is ``test`` (meta_test) or ``ood`` (meta_ood, outside the training ranges); ``points`` is
``grid`` (100-point grid) or ``query`` (K random query points); ``K`` the support points adapted on;
``s`` the adaptation steps; ``stat`` ``mse`` or ``ci95`` (the 95% half-width). A step where adaptation
diverged (a NaN or infinite error on some task, or a mean above 100 times the error before adapting) has
``null`` values.

The task's limit (:mod:`metahpo.evaluation.task_limit`) is no learner and takes no steps: it flattens to
``limit.<split>.<points>.k<K>.<stat>``, and its plot data repeat that one value at every step.
"""

from __future__ import annotations

import numpy as np
import torch

from metahpo import paths
from metahpo.evaluation.paired import PER_TASK, headline_values
from metahpo.evaluation.task_limit import limit_errors, ranges
from metahpo.learners.adaptation import DIVERGED_FACTOR, POINT_SETS, adaptation_errors, summarize, trained_steps
from metahpo.params import Params
from metahpo.tasks.storage import load_split

SPLITS = {"test": "meta_test", "ood": "meta_ood"}
# The plot panels (metahpo.evaluation.panels) and metrics of every learner, read back by the report.
PLOT_PANELS, PLOT_METRICS = ("adaptation", "ood", "kshot"), ("grid_mse", "query_mse")


def load_splits() -> dict[str, dict]:
    """meta_test and meta_ood, by their short names."""
    return {short: load_split(paths.TASKS, name) for short, name in SPLITS.items()}


def protocol(params: Params, splits: dict) -> dict:
    """What every learner was evaluated on."""
    return {"tasks": len(splits["test"]["support_x"]), "shots": params.tasks.shots, "query": params.tasks.query}


def _stat(errors: np.ndarray) -> dict:
    s = summarize(errors)
    return {"mse": s["mse"], "ci95": s["ci95"]}


def _stats(errors_by_step) -> list[dict]:
    """Mean and CI per step; a step whose mean is not finite or above :data:`DIVERGED_FACTOR` times the
    mean before adapting (step 0) has diverged and gets ``null`` values."""
    stats = [_stat(errors) for errors in errors_by_step]
    start = stats[0]["mse"]
    for stat in stats:
        if stat["mse"] is None or (start is not None and stat["mse"] > DIVERGED_FACTOR * start):
            stat.update(mse=None, ci95=None)
    return stats


def learner_results(learner, splits: dict, params: Params, steps: list[int], device: torch.device) -> tuple[dict, dict]:
    """``(metrics entry, plot data by panel)`` of one learner: adaptation curves per split, and per K."""
    tasks, settings = params.tasks, params.evaluate
    max_steps, chunk, shots = settings.max_steps, settings.task_chunk, tasks.shots
    entry: dict = {"inner_steps": trained_steps(learner)}
    plots: dict[str, dict] = {}
    for short, split in splits.items():
        errors = adaptation_errors(learner, split, max_steps, chunk, device, shots)
        curve: dict = {"step": np.arange(max_steps + 1)}
        for points in POINT_SETS:
            stats = _stats(errors[points][: max_steps + 1])
            curve[f"{points}_mse"], curve[f"{points}_ci95"] = zip(*((s["mse"], s["ci95"]) for s in stats))
            entry.setdefault(short, {})[points] = {f"k{shots}": {f"step{s}": stats[s] for s in steps}}
            if short == "test" and points == "grid" and entry["inner_steps"] <= max_steps:
                trained = entry["inner_steps"]
                entry[PER_TASK] = headline_values(errors[points][trained], stats[trained], "mse")
        plots["adaptation" if short == "test" else short] = curve
    kshot: dict = {"k": sorted(tasks.eval_shots)}
    for k in kshot["k"]:
        if k == shots and max_steps >= 1:  # measured with the curves above
            continue
        errors = adaptation_errors(learner, splits["test"], 1, chunk, device, k)
        for points in POINT_SETS:
            entry["test"][points].setdefault(f"k{k}", {})["step1"] = _stats(errors[points][:2])[1]
    for points in POINT_SETS:
        per_k = [entry["test"][points][f"k{k}"]["step1"] for k in kshot["k"]]
        kshot[f"{points}_mse"] = [s["mse"] for s in per_k]
        kshot[f"{points}_ci95"] = [s["ci95"] for s in per_k]
    plots["kshot"] = kshot
    return entry, plots


LIMIT_METHOD = (
    "not a learner: A*sin(x - phase) fitted to each task's K support points by least squares, A and phase in "
    "the ranges the split was drawn from"
)


def reference_results(params: Params, splits: dict) -> dict[str, tuple[dict, dict]]:
    """``{"limit": (metrics entry, plot data by panel)}``: the task's limit, scored like the learners.

    Every split at the training K, and meta_test at every K of ``tasks.eval_shots``; its curves repeat the
    one step-independent value at each step, so that it lines up with the learners' curves.
    """
    tasks, n_steps = params.tasks, params.evaluate.max_steps + 1
    entry: dict = {"method": LIMIT_METHOD}
    plots: dict[str, dict] = {}
    for short, split in splits.items():
        shots_here = sorted({tasks.shots, *tasks.eval_shots}) if short == "test" else [tasks.shots]
        for k in shots_here:
            errors = limit_errors(split, k, *ranges(tasks, short))
            for points in POINT_SETS:
                entry.setdefault(short, {}).setdefault(points, {})[f"k{k}"] = _stat(errors[points])
            if short == "test" and k == tasks.shots:
                entry[PER_TASK] = headline_values(errors["grid"], entry["test"]["grid"][f"k{k}"], "mse")
        curve: dict = {"step": np.arange(n_steps)}
        for points in POINT_SETS:
            stat = entry[short][points][f"k{tasks.shots}"]
            curve[f"{points}_mse"], curve[f"{points}_ci95"] = [stat["mse"]] * n_steps, [stat["ci95"]] * n_steps
        plots["adaptation" if short == "test" else short] = curve
    kshot: dict = {"k": sorted(tasks.eval_shots)}
    for points in POINT_SETS:
        kshot[f"{points}_mse"] = [entry["test"][points][f"k{k}"]["mse"] for k in kshot["k"]]
        kshot[f"{points}_ci95"] = [entry["test"][points][f"k{k}"]["ci95"] for k in kshot["k"]]
    plots["kshot"] = kshot
    return {"limit": (entry, plots)}
