"""One search trial: meta-train a setting briefly and score it on meta_val.

``run_trial`` is a plain module-level function of plain data, so that it runs the same in this
process, in a local process pool, or on a Dask worker on another machine. With a multi-fidelity search
a request trains only up to its rung (``stop_at``) and hands back each training's state, and the
request of the next rung continues from those states instead of starting again.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np

from metahpo.errors import DivergenceError
from metahpo.learners.cost import trained_iterations
from metahpo.learners.family import family_of
from metahpo.learners.metatrain import StateError, build_learner, meta_train
from metahpo.learners.settings import apply_point, learner_config, train_settings
from metahpo.params import Params
from metahpo.seeds import trial_seed


@dataclass(frozen=True)
class TrialRequest:
    """Everything a worker needs: params, the point, its seed, the data and the early-stop reference.

    ``folds`` holds ``(train split, validation split)`` pairs: ``(meta_train, meta_val)`` first, then the
    class folds of ``search.class_folds`` (see :mod:`metahpo.search.class_folds`).
    """

    trial: int
    point: dict
    seed: int
    params: Params
    folds: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]
    medians: list[float] | None = None
    trainings: tuple[int, ...] | None = None  # indices (see :func:`training_count`) to run; None: all
    stop_at: int | None = None  # train up to this iteration (a rung) instead of search.iterations
    resume: dict[int, dict] | None = None  # training index -> state to continue from (see meta_train)
    # A split each training that reaches search.iterations is also scored on (the tabular benchmark's
    # meta_test column); its scores go to TrialResult.test_objectives and never to a search.
    test_split: dict[str, np.ndarray] | None = None


@dataclass
class TrialResult:
    """What a trial reports back: ``status`` is ``ok``, ``stopped`` (median rule) or ``failed``."""

    trial: int
    status: str
    objective: float = math.nan
    objectives: list[float] = field(default_factory=list)  # one per fold and repeat; ``objective`` is their mean
    curve: list[float] = field(default_factory=list)
    stopped_at: int = 0
    seconds: float = 0.0
    error: str = ""
    states: dict[int, dict] = field(default_factory=dict)  # training index -> state at ``stop_at``
    test_objectives: list[float] = field(default_factory=list)  # on ``TrialRequest.test_split``, if any

    @classmethod
    def from_plain(cls, record, trial: int) -> TrialResult:
        """The result of trial ``trial`` from a worker's plain record (:func:`plain_trial`), checked field by field.

        Raises ``ValueError`` naming the first field that is missing or of the wrong type.
        """
        if not isinstance(record, dict) or set(record) != {f.name for f in fields(cls)}:
            raise ValueError("result refused: not a trial result's fields")
        number = (int, float)
        checks = {
            "trial": lambda v: type(v) is int and v == trial,
            "status": lambda v: v in ("ok", "stopped", "failed"),
            "objective": lambda v: isinstance(v, number) and not isinstance(v, bool),
            "objectives": lambda v: isinstance(v, list) and all(isinstance(x, number) for x in v),
            "curve": lambda v: isinstance(v, list) and all(isinstance(x, number) for x in v),
            "stopped_at": lambda v: type(v) is int,
            "seconds": lambda v: isinstance(v, number) and not isinstance(v, bool),
            "error": lambda v: isinstance(v, str),
            "states": lambda v: (
                isinstance(v, dict) and all(type(k) is int and isinstance(x, dict) for k, x in v.items())
            ),
        }
        for name, check in checks.items():
            if not check(record[name]):
                raise ValueError(f"result refused: field {name} has the wrong type or value")
        return cls(**{**record, "error": record["error"].splitlines()[0] if record["error"] else ""})


def plain_trial(trial_fn, request: TrialRequest) -> dict:
    """In the worker: ``trial_fn(request)``'s :class:`TrialResult` as a plain dict (read by ``from_plain``)."""
    result = trial_fn(request)
    if not isinstance(result, TrialResult):
        return result  # refused by the caller unless it is plain data, and then by from_plain
    return {f.name: getattr(result, f.name) for f in fields(result)}  # not asdict: no deep copy of the states


class StopTrial(Exception):
    """Raised at a checkpoint where the median rule stops a trial."""

    def __init__(self, step: int, value: float):
        super().__init__(f"stopped at iteration {step}: {value:.4g} above the median of earlier trials")
        self.step, self.value = step, value


def checkpoint_steps(iterations: int, checkpoints: int) -> int:
    """Iterations between two checkpoints of the median rule."""
    return max(1, iterations // checkpoints)


def median_reference(curves: list[list[float]], min_trials: int) -> list[float] | None:
    """Median validation MSE at each checkpoint over ``curves``, once ``min_trials`` curves reach it."""
    medians = []
    for k in range(max((len(c) for c in curves), default=0)):
        values = [c[k] for c in curves if len(c) > k]
        if len(values) < min_trials:
            break
        medians.append(statistics.median(values))
    return medians or None


def training_count(request: TrialRequest) -> int:
    """Trainings of a trial: one per fold and repeat, indexed fold by fold (a fold's repeats together)."""
    return len(request.folds) * request.params.search.repeats


def split_request(request: TrialRequest) -> list[TrialRequest]:
    """The trial as one request per training, so that its trainings can run on different workers."""
    count = training_count(request)
    if count == 1:
        return [request]
    resume = request.resume or {}
    return [replace(request, trainings=(j,), resume={j: resume[j]} if j in resume else None) for j in range(count)]


def merge_results(parts: list[TrialResult]) -> TrialResult:
    """The result of a whole trial from the results of its trainings, in training order.

    It equals what :func:`run_trial` gives for the whole request: the objectives up to the first
    training that did not finish, whose status, objective and error decide the trial's; the seconds add up.
    """
    if len(parts) == 1:
        return parts[0]
    merged = TrialResult(trial=parts[0].trial, status="ok", seconds=round(sum(p.seconds for p in parts), 3))
    for part in parts:
        if part.status != "ok":
            merged.status, merged.objective, merged.error = part.status, part.objective, part.error
            merged.stopped_at = part.stopped_at
            return merged
        merged.objectives += part.objectives
        merged.curve += part.curve
        merged.test_objectives += part.test_objectives
        merged.states |= part.states
    merged.objective = statistics.fmean(merged.objectives)
    return merged


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """Training seeds of a trial's repeats: the trial seed first, then independent ones derived from it."""
    return [seed] + [trial_seed(seed, r) for r in range(1, repeats)]


def _train_once(
    request: TrialRequest, index: int, setting: dict, pool, val_split: dict, seed: int, device, result
) -> float:
    """Train ``setting`` once with ``seed`` (training ``index`` of the trial) and return its objective on ``val_split``.

    With the median rule, the objective at each checkpoint goes to ``result.curve`` and stops the trial
    (:class:`StopTrial`) when it is above the median of earlier trials there. With ``request.stop_at`` the
    training continues from its state in ``request.resume`` (if any), stops there and leaves its new
    state in ``result.states``.
    """
    params, search = request.params, request.params.search
    family, steps = family_of(params), search.objective_steps
    rule = search.median_stop
    iterations = trained_iterations(setting, params, search.iterations)
    stop_at = None if request.stop_at is None else trained_iterations(setting, params, request.stop_at)
    every = checkpoint_steps(iterations, rule.checkpoints) if rule.enabled else 0
    learner = build_learner(learner_config(setting, params), seed, device)

    def checkpoint(step: int, loss: float) -> None:
        value = family.objective(learner, val_split, steps, device)
        result.curve.append(value)
        k = len(result.curve) - 1
        medians = request.medians or []
        if step < iterations and k < len(medians) and not value <= medians[k]:
            raise StopTrial(step, value)

    budget = train_settings(setting, params, iterations)
    resume = (request.resume or {}).get(index)
    try:
        state = meta_train(
            learner, pool, budget, seed, every, checkpoint if every else None, stop_at=stop_at, state=resume
        )
    except StateError as exc:  # a checkpoint that is not this training's: start again (same result, more work)
        print(f"trial {request.trial}: {exc}; training from the start", file=sys.stderr)
        learner = build_learner(learner_config(setting, params), seed, device)
        state = meta_train(learner, pool, budget, seed, every, checkpoint if every else None, stop_at=stop_at)
    if stop_at is not None and stop_at < iterations:
        result.states[index] = state
    elif request.test_split is not None:
        result.test_objectives.append(family.objective(learner, request.test_split, steps, device))
    return family.objective(learner, val_split, steps, device)


def run_trial(request: TrialRequest) -> TrialResult:
    """Meta-train the request's setting for ``search.iterations`` and return its meta_val objective.

    The iterations are those of :func:`trained_iterations` (with ``search.fidelity_unit: compute``, the
    setting's share of the untuned setting's compute).

    The setting is trained ``search.repeats`` times on each fold of the request, every time with the
    next seed of :func:`repeat_seeds` (fold by fold, repeats within a fold), and scored on that fold's
    validation split; the objective is the mean. A training that diverges fails the trial. With
    ``request.trainings`` only those trainings run (see :func:`split_request` and :func:`merge_results`).
    """
    from metahpo.runtime import setup  # in the worker process: threads, deterministic kernels, device

    start = time.perf_counter()
    params, repeats = request.params, request.params.search.repeats
    result = TrialResult(trial=request.trial, status="ok")
    try:
        device = setup(params)
        setting = apply_point(params, request.point)
        seeds = repeat_seeds(request.seed, training_count(request))
        pool, pool_fold = None, None
        for index in range(len(seeds)) if request.trainings is None else request.trainings:
            fold, seed = index // repeats, seeds[index]
            train_split, val_split = request.folds[fold]
            if fold != pool_fold:
                pool, pool_fold = family_of(params).make_pool(train_split, device), fold
            value = _train_once(request, index, setting, pool, val_split, seed, device, result)
            if not math.isfinite(value):
                raise DivergenceError(f"validation objective is {value} after adaptation (fold {fold}, seed {seed})")
            result.objectives.append(value)
        result.objective = statistics.fmean(result.objectives)
    except StopTrial as stop:
        result.status, result.objective, result.stopped_at, result.error = "stopped", stop.value, stop.step, str(stop)
    except Exception as exc:  # noqa: BLE001 - any failure of a trial is recorded, and the search goes on
        result.status, result.objective, result.error = "failed", math.nan, f"{type(exc).__name__}: {exc}"
        result.states = {}
    result.seconds = round(time.perf_counter() - start, 3)
    return result
