"""Held-out evaluation of N-way classification: query accuracy over the stored meta_test episodes.

Metrics flatten to ``<learner>.test.query.k<K>.step<s>.<accuracy|ci95>``: the mean query accuracy after
``s`` steps with ``K`` support images per class, and its 95% CI half-width. The floor (nearest class mean
on raw pixels, :mod:`metahpo.evaluation.task_limit`) takes no steps: ``floor.test.query.k<K>.<accuracy|ci95>``.
"""

from __future__ import annotations

import numpy as np
import torch

from metahpo import paths
from metahpo.evaluation.paired import PER_TASK, headline_values
from metahpo.evaluation.task_limit import pixel_floor_accuracy
from metahpo.learners.adaptation import classification_scores, summarize_accuracy, trained_steps
from metahpo.params import Params
from metahpo.tasks.storage import load_split

# The plot panels (metahpo.evaluation.panels) and metrics of every learner, read back by the report.
PLOT_PANELS, PLOT_METRICS = ("accuracy", "kshot_accuracy"), ("accuracy",)


def load_splits() -> dict[str, dict]:
    """The stored meta_test episodes."""
    return {"test": load_split(paths.TASKS, "meta_test")}


def protocol(params: Params, splits: dict) -> dict:
    """What every learner was evaluated on."""
    tasks = params.tasks
    return {
        "episodes": len(splits["test"]["support_index"]),
        "ways": tasks.ways,
        "shots": tasks.shots,
        "query": tasks.query,
    }


def learner_results(learner, splits: dict, params: Params, steps: list[int], device: torch.device) -> tuple[dict, dict]:
    """``(metrics entry, plot data by kind)`` of one learner: the accuracy curve, and accuracy per K."""
    test, tasks, settings = splits["test"], params.tasks, params.evaluate
    max_steps, chunk, shots = settings.max_steps, settings.task_chunk, tasks.shots
    scores = classification_scores(learner, test, max_steps, chunk, device, shots)
    stats = [summarize_accuracy(scores["accuracy"][s]) for s in range(max_steps + 1)]
    per_k = {f"k{shots}": {f"step{s}": stats[s] for s in steps}}
    curve = {
        "step": np.arange(max_steps + 1),
        "accuracy": [s["accuracy"] for s in stats],
        "ci95": [s["ci95"] for s in stats],
        "loss": scores["loss"].mean(axis=1),
    }
    kshot: dict = {"k": sorted(tasks.eval_shots), "accuracy": [], "ci95": []}
    for k in kshot["k"]:
        if k == shots and max_steps >= 1:  # measured with the curve above
            at_one = stats[1]
        else:
            at_one = summarize_accuracy(classification_scores(learner, test, 1, chunk, device, k)["accuracy"][1])
        per_k.setdefault(f"k{k}", {})["step1"] = at_one
        kshot["accuracy"].append(at_one["accuracy"])
        kshot["ci95"].append(at_one["ci95"])
    trained = trained_steps(learner)
    entry = {"inner_steps": trained, "test": {"query": per_k}}
    if trained <= max_steps:
        entry[PER_TASK] = headline_values(scores["accuracy"][trained], stats[trained], "accuracy")
    return entry, {"accuracy": curve, "kshot_accuracy": kshot}


FLOOR_METHOD = (
    "not a learner: each query image goes to the class whose K support images have the nearest mean in raw pixels"
)


def reference_results(params: Params, splits: dict) -> dict[str, tuple[dict, dict]]:
    """``{"floor": (metrics entry, plot data by kind)}``: the raw-pixel nearest class mean, scored like the learners.

    It takes no steps: its metrics have no step level and its accuracy curve repeats its one value.
    """
    test, tasks, chunk = splits["test"], params.tasks, params.evaluate.task_chunk
    ks = sorted({tasks.shots, *tasks.eval_shots})
    accuracy = {k: pixel_floor_accuracy(test, k, chunk) for k in ks}
    per_k = {f"k{k}": summarize_accuracy(accuracy[k]) for k in ks}
    at_shots, n_steps = per_k[f"k{tasks.shots}"], params.evaluate.max_steps + 1
    curve = {
        "step": np.arange(n_steps),
        "accuracy": [at_shots["accuracy"]] * n_steps,
        "ci95": [at_shots["ci95"]] * n_steps,
    }
    kshot = {"k": sorted(tasks.eval_shots)}
    kshot["accuracy"] = [per_k[f"k{k}"]["accuracy"] for k in kshot["k"]]
    kshot["ci95"] = [per_k[f"k{k}"]["ci95"] for k in kshot["k"]]
    entry = {"method": FLOOR_METHOD, "test": {"query": per_k}, PER_TASK: accuracy[tasks.shots].tolist()}
    return {"floor": (entry, {"accuracy": curve, "kshot_accuracy": kshot})}
