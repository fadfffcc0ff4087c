"""Cheap trial functions with known optima, importable by worker processes (for the search-loop tests)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from metahpo.search.trial import TrialRequest, TrialResult

MARKER_DIR = "METAHPO_TEST_MARKERS"


def bowl_value(point: dict) -> float:
    """Minimum at inner_lr = 0.03, hidden = 50, algorithm = metasgd."""
    penalty = 0.0 if point.get("algorithm", "metasgd") == "metasgd" else 1.0
    return 0.01 + math.log10(point["inner_lr"] / 0.03) ** 2 + ((point["hidden"] - 50) / 30) ** 2 + penalty


def bowl(request: TrialRequest) -> TrialResult:
    """The bowl; its seconds are the clock when it ran, so a trial that runs again shows a new value."""
    return TrialResult(request.trial, "ok", objective=bowl_value(request.point), seconds=time.perf_counter())


def bowl_of_inner_lr(request: TrialRequest) -> TrialResult:
    """The bowl along ``inner_lr`` alone, for spaces without the other dimensions."""
    return TrialResult(request.trial, "ok", objective=bowl_value({"hidden": 50, **request.point}))


def diverges_above_005(request: TrialRequest) -> TrialResult:
    if request.point["inner_lr"] > 0.05:
        return TrialResult(request.trial, "failed", error="DivergenceError: meta-loss is nan at iteration 3")
    return bowl(request)


def always_fails(request: TrialRequest) -> TrialResult:
    return TrialResult(request.trial, "failed", error="DivergenceError: boom")


def dies_once_on_trial_1(request: TrialRequest) -> TrialResult:
    """Kills its own worker process the first time trial 1 runs (a marker file remembers)."""
    marker = Path(os.environ[MARKER_DIR]) / "died"
    if request.trial == 1 and not marker.exists():
        marker.touch()
        os._exit(1)
    return bowl(request)


def always_dies_on_trial_1(request: TrialRequest) -> TrialResult:
    if request.trial == 1:
        os._exit(1)
    return bowl(request)


def bowl_per_training(request: TrialRequest) -> TrialResult:
    """The bowl plus 0.001 per training index; refuses a request that was not split into single trainings."""
    if request.trainings is None or len(request.trainings) != 1:
        return TrialResult(request.trial, "failed", error=f"not split: {request.trainings}")
    value = bowl_value(request.point) + request.trainings[0] / 1000
    return TrialResult(request.trial, "ok", objective=value, objectives=[value], seconds=1.0)


def rung_bowl(request: TrialRequest) -> TrialResult:
    """The bowl, lower the longer a setting trains; each training hands back a state so the next rung continues.

    Every call appends ``trial start stop`` to the file named by ``$METAHPO_TEST_MARKERS/jobs`` (if set),
    so a test can tell which rungs ran and whether they continued.
    """
    stop = request.stop_at or request.params.search.iterations
    trainings = request.trainings or (0,)
    start = (request.resume or {}).get(trainings[0], {}).get("step", 0)
    if MARKER_DIR in os.environ:
        with open(Path(os.environ[MARKER_DIR]) / "jobs", "a") as fh:
            fh.write(f"{request.trial} {start} {stop}\n")
    value = bowl_value(request.point) + 100 / stop + 0.001 * trainings[0]
    states = {j: {"step": stop} for j in trainings} if stop < request.params.search.iterations else {}
    return TrialResult(request.trial, "ok", value, [value] * len(trainings), seconds=time.perf_counter(), states=states)


def rung_bowl_failing_high_lr(request: TrialRequest) -> TrialResult:
    """:func:`rung_bowl`, failing at every rung above 0.3 inner learning rate."""
    if request.point["inner_lr"] > 0.3:
        return TrialResult(request.trial, "failed", error="DivergenceError: meta-loss is nan")
    return rung_bowl(request)


class Interrupt:
    """A trial function that runs ``rung_bowl`` ``jobs`` times, then raises KeyboardInterrupt (a killed stage)."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def __call__(self, request: TrialRequest) -> TrialResult:
        if self.jobs == 0:
            raise KeyboardInterrupt("killed")
        self.jobs -= 1
        return rung_bowl(request)


class Evil:
    """An object whose unpickling would create the file ``path``: what a hostile worker would hand back."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


class EvilError(Exception):
    """An exception whose unpickling would create the file ``path``."""

    def __init__(self, path: str):
        super().__init__(f"evil {path}")
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def evil_path() -> str:
    return str(Path(os.environ[MARKER_DIR]) / "pwned")


def returns_evil_on_trial_1(request: TrialRequest):
    """Hands back an :class:`Evil` object for trial 1, the bowl for the others."""
    return Evil(evil_path()) if request.trial == 1 else bowl(request)


def evil_state_on_trial_1(request: TrialRequest):
    """A proper result for trial 1 whose training state hides an :class:`Evil` object."""
    result = bowl(request)
    if request.trial == 1:
        result.states = {0: {"step": 1, "weights": Evil(evil_path())}}
    return result


def raises_evil_on_trial_1(request: TrialRequest):
    if request.trial == 1:
        raise EvilError(evil_path())
    return bowl(request)


def kills_its_worker_once_on_trial_1(request: TrialRequest) -> TrialResult:
    """Trial 1 kills its worker the first time, while trial 0 runs beside it until the broken pool ends it.

    Each run appends its trial to ``$METAHPO_TEST_MARKERS/runs``, so a test can tell which trials ran again.
    """
    folder = Path(os.environ[MARKER_DIR])
    with open(folder / "runs", "a") as fh:
        fh.write(f"{request.trial}\n")
    started, died = str(folder / "started"), str(folder / "died")
    if request.trial == 0:
        beside_a_death(started, died, None)
    elif request.trial == 1:
        die_once_after(started, died, None)
    return bowl(request)


def wait_for(path: str, seconds: float = 120) -> None:
    """Return once the file ``path`` exists; raise after ``seconds`` (so a test fails instead of hanging)."""
    deadline = time.monotonic() + seconds
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {seconds} s for {path}")
        time.sleep(0.02)


def beside_a_death(started: str, died: str, value):
    """The first time: creates ``started``, waits for ``died``, then runs until the broken pool terminates
    its worker (it raises if that never comes). Afterwards: ``value`` at once."""
    if Path(started).exists():
        return value
    Path(started).touch()
    wait_for(died)
    time.sleep(120)
    raise RuntimeError("still running 120 s after the pool broke: it was not lost with the pool")


def die_once_after(event: str, died: str, value):
    """The first time: waits for the file ``event``, creates ``died`` and kills its worker. Afterwards: ``value``."""
    if Path(died).exists():
        return value
    wait_for(event)
    Path(died).touch()
    os._exit(1)


def return_value(value):
    """``value`` (a healthy job)."""
    return value


def always_die():
    os._exit(1)
