"""Held-out evaluation of N-way classification: query accuracy over the stored meta_test episodes.

Metrics flatten to ``<learner>.test.query.k<K>.step<s>.<accuracy|ci95>``: the mean query accuracy after
``s`` steps with ``K`` support images per class, and its 95% CI half-width.
"""

from __future__ import annotations

import numpy as np
import torch

from metahpo import paths
from metahpo.learners.adaptation import classification_scores, summarize_accuracy, trained_steps
from metahpo.params import Params
from metahpo.tasks.storage import load_split


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
    entry = {"inner_steps": trained_steps(learner), "test": {"query": per_k}}
    return entry, {"accuracy": curve, "kshot_accuracy": kshot}


def reference_results(params: Params, splits: dict) -> dict[str, tuple[dict, dict]]:
    """No reference row yet."""
    return {}
