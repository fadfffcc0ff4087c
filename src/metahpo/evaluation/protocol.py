"""DVC stage ``evaluate``: the fixed held-out protocol, the same skeleton for every task family.

Each learner of the family is loaded, adapted with its own inner rule for 0..``evaluate.max_steps``
steps on every held-out task, and scored by the family's module (:mod:`metahpo.evaluation.regression`
or :mod:`metahpo.evaluation.classification`). ``reports/evaluation.json`` holds the ``protocol`` and one
entry per learner at the steps reported, plus the family's reference row (the task's limit, or for
classification its floor), which is no learner; it also holds the learners that stand for the other
kinds of meta-learner the search tried (``best_<kind>``, listed in ``models/kinds.json``) and ``kinds``,
which names them, and ``paired``: the tuned learner minus each other row task by task
(:mod:`metahpo.evaluation.paired`). ``reports/metrics.json`` and ``metrics_ci95.json`` hold the headline
(:mod:`metahpo.evaluation.headline`), ``reports/plots/`` the curves (DVC plots); neither has the kinds'
stand-ins, so their learners stay the same whatever the search tried.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from metahpo import paths
from metahpo.atomic import atomic_dir, write_json, write_text
from metahpo.errors import ArtifactError
from metahpo.evaluation import classification, regression
from metahpo.evaluation.headline import headline
from metahpo.evaluation.paired import paired_section, split_per_task
from metahpo.evaluation.panels import panel_tables
from metahpo.executors import RefusedResult, TrialRunner, collect, run_jobs
from metahpo.json_files import BOOLEAN, INTEGER, NULL, NUMBER, OBJECT, TEXT, Each, Optional, load_json_object
from metahpo.learners.adaptation import trained_steps
from metahpo.learners.artifacts import load_learner
from metahpo.learners.family import ByProblem, family_of
from metahpo.params import Params
from metahpo.tasks.storage import check_generated_with

MODULES = ByProblem(regression=regression, classification=classification)

# One kind's entry in kinds.json (and in evaluation.json): a kind without a scored trial has no learner and
# at most ``trials_of_kind``; the rest describe the search trial its learner was trained from.
KIND_ENTRY = {
    "learner": (TEXT, NULL),
    "trials_of_kind": Optional(INTEGER),
    "trial": Optional(INTEGER),
    "status": Optional(TEXT),
    "iterations": Optional(INTEGER),
    "objective": Optional(NUMBER),
    "cost_macs": Optional(INTEGER),
    "setting": Optional(OBJECT),
}
KINDS_RECORD = {"compare_kinds": BOOLEAN, "kinds": Each(KIND_ENTRY)}


def headline_steps(max_steps: int, trained: list[int]) -> list[int]:
    """Steps reported in metrics.json for every learner: 0, 1, each learner's trained number, the last."""
    return sorted({s for s in (0, 1, *trained, max_steps) if s <= max_steps})


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


def each_once(learners: dict, score_all) -> dict[str, tuple]:
    """``{name: score}`` for every learner in order; ``score_all(names)`` scores each twin (:func:`twins`) once."""
    same_as = twins(learners)
    scores = score_all([name for name in learners if name not in same_as])
    for name, twin in same_as.items():
        print(f"{name}: same config and weights as {twin}, reusing its scores", file=sys.stderr)
    return {name: scores[same_as.get(name, name)] for name in learners}


def score_job(name: str, params: Params, steps: list[int]) -> tuple[dict, dict]:
    """One learner's ``(metrics entry, plot data)``, scored here or in a worker from its saved model."""
    from metahpo.runtime import setup  # in a worker: threads, deterministic kernels, device

    device = setup(params)
    family = family_of(params)
    module = MODULES[family]
    learner = load_learner(paths.MODELS / name, device, family)
    return _python_values(module.learner_results(learner, module.load_splits(), params, steps, device))


def _python_values(value):
    """``value`` with numpy arrays and scalars as Python lists and numbers (a worker hands back only those)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _python_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_python_values(v) for v in value)
    return value


def _plain(value) -> bool:
    """Whether ``value`` is what :func:`score_job` hands back: numbers, text, None, lists, tuples, str-keyed dicts."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def checked_scores(name: str, value) -> tuple[dict, dict]:
    """A scoring worker's ``(metrics entry, plot data)``, checked as plain data of that shape."""
    if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, dict) for v in value) and _plain(value)):
        raise RefusedResult(f"result refused: the worker scoring {name} handed back no (metrics, plot data)")
    return value


EVALUATE_RETRIES = 1  # reruns of a learner whose worker died while it was scored alone (see run_jobs)


def score_learners(
    names: list[str], learners: dict, splits: dict, params: Params, steps: list[int], device
) -> dict[str, tuple]:
    """``{name: (metrics entry, plot data)}`` of the named learners, ``evaluate.workers`` at a time.

    With one worker they are scored here, one after the other; with more, each worker loads its learner from
    ``models/`` and scores it, with the same threads and deterministic kernels, so the numbers are the same.
    """
    module = MODULES[family_of(params)]
    workers = min(params.evaluate.workers, len(names))
    if workers <= 1:
        return {name: module.learner_results(learners[name], splits, params, steps, device) for name in names}
    scores: dict[str, tuple] = {}
    with TrialRunner("local", workers) as runner:
        jobs = {name: (score_job, name, params, steps) for name in names}
        run_jobs(runner, jobs, workers, EVALUATE_RETRIES, collect(scores, checked_scores, "scoring"))
    return scores


def read_kinds() -> dict:
    """``models/kinds.json`` (written by train): the learner that stands for each kind of meta-learner searched."""
    return load_json_object(paths.MODELS / paths.KINDS, ArtifactError, "rerun the train stage", KINDS_RECORD)


def compared_learners(kinds: dict | None, family, source: Path) -> list[str]:
    """The learners of ``{kind: {learner}}`` trained only to stand for a kind of meta-learner (``best_<kind>``).

    Each is a folder of ``models/`` (:func:`metahpo.paths.inside`); ``source`` is the file ``kinds`` came from.
    """
    if not isinstance(kinds, dict | None) or not all(
        isinstance(e, dict) and "learner" in e for e in (kinds or {}).values()
    ):
        raise ArtifactError(
            f"{source}: kinds: expected {{kind: {{learner: name or null}}}}; rerun the stage that wrote it"
        )
    names = []
    for kind, entry in (kinds or {}).items():
        name = entry["learner"]
        if name is not None:
            paths.inside(paths.MODELS, name, source, f"kinds.{kind}.learner")
            if name not in family.learners:
                names.append(name)
    return names


def evaluate_stage(params: Params, device: torch.device) -> None:
    """Write ``reports/evaluation.json``, the headline metrics and every learner's curves (DVC plots)."""
    check_generated_with(paths.TASKS, params.tasks, params.seed)
    family = family_of(params)
    module = MODULES[family]
    splits = module.load_splits()
    kinds = read_kinds()
    compared = compared_learners(kinds["kinds"], family, paths.MODELS / paths.KINDS)
    learners = {name: load_learner(paths.MODELS / name, device, family) for name in (*family.learners, *compared)}
    steps = headline_steps(params.evaluate.max_steps, [trained_steps(learner) for learner in learners.values()])
    metrics: dict = {"protocol": module.protocol(params, splits)}
    scored = each_once(learners, lambda names: score_learners(names, learners, splits, params, steps, device))
    results, per_task = split_per_task(scored | module.reference_results(params, splits))
    metrics |= {name: entry for name, (entry, _) in results.items()}
    metrics["paired"] = paired_section(per_task, [name for name in results if name not in compared])
    metrics["kinds"] = kinds["kinds"] if kinds["compare_kinds"] else None  # the report's side by side
    # The kinds' stand-ins are compared in the report's table only: the plots keep the learners of every run.
    plots = {name: plot_data for name, (_, plot_data) in results.items() if name not in compared}
    with atomic_dir(paths.PLOTS) as plot_dir:
        for path, table in panel_tables(params.tasks.family, plots, plot_dir).items():
            write_text(path, table.to_csv(index=False, float_format="%.6g"))
    write_json(paths.EVALUATION, metrics)
    tasks = params.tasks
    means, cis = headline(metrics, family.learners, tasks.shots, tasks.eval_shots, params.evaluate.max_steps)
    write_json(paths.METRICS_CI, cis, sort_keys=False)
    write_json(paths.METRICS, means, sort_keys=False)
