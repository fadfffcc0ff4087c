"""DVC stage ``evaluate``: the fixed held-out protocol for every trained learner.

``reports/metrics.json`` is nested so that DVC flattens it to ``<learner>.<split>.<kind>.k<K>.step<s>.<stat>``:
``learner`` is ``tuned``, ``default`` or ``pretrained``; ``split`` is ``test`` (meta_test) or ``ood``
(meta_ood, outside the training ranges); ``kind`` is ``grid`` (100-point grid) or ``query`` (K random
query points); ``K`` the support points adapted on; ``s`` the adaptation steps; ``stat`` ``mse`` or
``ci95`` (the 95% half-width). A step where adaptation diverged on some task has ``null`` values.

Classification (``digits``, ``image_folder``): ``<learner>.test.query.k<K>.step<s>.<accuracy|ci95>``
over the stored meta_test episodes, ``learner`` ``tuned``, ``default`` or ``protonet``; K is the
support images per class.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from metahpo import paths
from metahpo.adaptation import QUERY_KINDS, adaptation_errors, classification_scores, summarize, summarize_accuracy
from metahpo.artifacts import load_learner
from metahpo.atomic import write_json, write_text
from metahpo.config import is_classification
from metahpo.tasks import load_split

SPLITS = {"test": "meta_test", "ood": "meta_ood"}


def headline_steps(max_steps: int, trained_steps: list[int]) -> list[int]:
    """Steps reported in metrics.json for every learner: 0, 1, each learner's trained number, the last."""
    return sorted({s for s in (0, 1, *trained_steps, max_steps) if s <= max_steps})


def _stat(errors: np.ndarray) -> dict:
    s = summarize(errors)
    return {"mse": s["mse"], "ci95": s["ci95"]}


def _write_csv(path, columns: dict) -> None:
    write_text(path, pd.DataFrame(columns).to_csv(index=False, float_format="%.6g"))


def trained_steps(learner) -> int:
    """Inner steps a learner was meta-trained with (none for the prototypical network)."""
    return 0 if learner.config.algorithm == "protonet" else learner.config.inner_steps


def twins(learners: dict) -> dict[str, str]:
    """Each learner whose config and weights equal an earlier one's, mapped to that earlier learner.

    When the search keeps the untuned setting, ``train`` saves the same weights twice; scoring them
    twice would only repeat the same numbers.
    """
    same_as: dict[str, str] = {}
    states = {name: learner.state_dict() for name, learner in learners.items()}
    names = list(learners)
    for i, name in enumerate(names):
        state = states[name]
        for earlier in names[:i]:
            other = states[earlier]
            if (
                learners[earlier].config == learners[name].config
                and state.keys() == other.keys()
                and all(torch.equal(state[k], other[k]) for k in state)
            ):
                same_as[name] = earlier
                break
    return same_as


def each_once(learners: dict, score) -> Iterator[tuple[str, tuple]]:
    """``(name, score(learner))`` for every learner, scoring a twin (see :func:`twins`) only once."""
    same_as, results = twins(learners), {}
    for name, learner in learners.items():
        if name in same_as:
            print(f"{name}: same config and weights as {same_as[name]}, reusing its scores", file=sys.stderr)
            results[name] = results[same_as[name]]
        else:
            results[name] = score(learner)
        yield name, results[name]


def evaluate_classification(params: dict, device: torch.device) -> None:
    """Accuracy of every learner on the stored meta_test episodes after 0..max_steps steps, and per K."""
    tasks, settings = params["tasks"], params["evaluate"]
    test = load_split(paths.TASKS, "meta_test")
    learners = {name: load_learner(paths.MODELS / name, device) for name in paths.learners(tasks)}
    steps = headline_steps(settings["max_steps"], [trained_steps(learner) for learner in learners.values()])
    metrics: dict = {
        "protocol": {
            "episodes": len(test["support_index"]),
            "ways": tasks["ways"],
            "shots": tasks["shots"],
            "query": tasks["query"],
        }
    }
    scored = each_once(learners, lambda learner: _classification_results(learner, test, tasks, settings, steps, device))
    for name, (metrics[name], curve, kshot) in scored:
        _write_csv(paths.accuracy_csv(name), curve)
        _write_csv(paths.kshot_accuracy_csv(name), kshot)
    write_json(paths.METRICS, metrics)


def _classification_results(learner, test: dict, tasks: dict, settings: dict, steps: list[int], device):
    """``(metrics entry, accuracy curve columns, K-shot columns)`` of one learner."""
    max_steps, chunk, shots = settings["max_steps"], settings["task_chunk"], tasks["shots"]
    scores = classification_scores(learner, test, max_steps, chunk, device, shots)
    stats = [summarize_accuracy(scores["accuracy"][s]) for s in range(max_steps + 1)]
    per_k = {f"k{shots}": {f"step{s}": stats[s] for s in steps}}
    curve = {
        "step": np.arange(max_steps + 1),
        "accuracy": [s["accuracy"] for s in stats],
        "ci95": [s["ci95"] for s in stats],
        "loss": scores["loss"].mean(axis=1),
    }
    kshot: dict = {"k": sorted(tasks["eval_shots"]), "accuracy": [], "ci95": []}
    for k in kshot["k"]:
        if k == shots and max_steps >= 1:  # measured with the curve above
            at_one = stats[1]
        else:
            at_one = summarize_accuracy(classification_scores(learner, test, 1, chunk, device, k)["accuracy"][1])
        per_k.setdefault(f"k{k}", {})["step1"] = at_one
        kshot["accuracy"].append(at_one["accuracy"])
        kshot["ci95"].append(at_one["ci95"])
    return {"inner_steps": trained_steps(learner), "test": {"query": per_k}}, curve, kshot


def evaluate_stage(params: dict, device: torch.device) -> None:
    """Write ``reports/metrics.json`` and the per-step, per-K and out-of-distribution curves (DVC plots)."""
    if is_classification(params["tasks"]):
        evaluate_classification(params, device)
        return
    tasks, settings = params["tasks"], params["evaluate"]
    splits = {short: load_split(paths.TASKS, name) for short, name in SPLITS.items()}
    learners = {name: load_learner(paths.MODELS / name, device) for name in paths.LEARNERS}
    steps = headline_steps(settings["max_steps"], [learner.config.inner_steps for learner in learners.values()])
    metrics: dict = {
        "protocol": {"tasks": len(splits["test"]["support_x"]), "shots": tasks["shots"], "query": tasks["query"]},
    }
    scored = each_once(learners, lambda learner: _regression_results(learner, splits, tasks, settings, steps, device))
    for name, (metrics[name], curves, kshot) in scored:
        for short, curve in curves.items():
            _write_csv(paths.adaptation_csv(name, short), curve)
        _write_csv(paths.kshot_csv(name), kshot)
    write_json(paths.METRICS, metrics)


def _regression_results(learner, splits: dict, tasks: dict, settings: dict, steps: list[int], device):
    """``(metrics entry, adaptation curve columns per split, K-shot columns)`` of one learner."""
    max_steps, chunk, shots = settings["max_steps"], settings["task_chunk"], tasks["shots"]
    entry: dict = {"inner_steps": learner.config.inner_steps}
    curves = {}
    for short, split in splits.items():
        errors = adaptation_errors(learner, split, max_steps, chunk, device, shots)
        curve: dict = {"step": np.arange(max_steps + 1)}
        for kind in QUERY_KINDS:
            stats = [_stat(errors[kind][s]) for s in range(max_steps + 1)]
            curve[f"{kind}_mse"], curve[f"{kind}_ci95"] = zip(*((s["mse"], s["ci95"]) for s in stats))
            entry.setdefault(short, {})[kind] = {f"k{shots}": {f"step{s}": stats[s] for s in steps}}
        curves[short] = curve
    kshot: dict = {"k": sorted(tasks["eval_shots"])}
    for k in kshot["k"]:
        if k == shots and max_steps >= 1:  # measured with the curves above
            continue
        errors = adaptation_errors(learner, splits["test"], 1, chunk, device, k)
        for kind in QUERY_KINDS:
            entry["test"][kind].setdefault(f"k{k}", {})["step1"] = _stat(errors[kind][1])
    for kind in QUERY_KINDS:
        per_k = [entry["test"][kind][f"k{k}"]["step1"] for k in kshot["k"]]
        kshot[f"{kind}_mse"] = [s["mse"] for s in per_k]
        kshot[f"{kind}_ci95"] = [s["ci95"] for s in per_k]
    return entry, curves, kshot
