"""The multi-fidelity schedule: a search's trials run bracket by bracket, rung by rung.

The rung and bracket arithmetic is in :mod:`metahpo.search.rungs`. Points of a bracket are asked when it
starts; promotions are decided once a rung is complete, so the log depends only on the params. Each
trial's rung is written to the log as it finishes and its training states to a checkpoint, so a killed
search resumes without rerunning a finished rung.
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from metahpo.atomic import atomic_path
from metahpo.executors import TrialRunner
from metahpo.search.rungs import Bracket, brackets, planned_iterations, promoted, rung_iterations
from metahpo.search.trial_log import FAILED, OK, PENDING, SMALLEST_TOLD, STOPPED, told_values
from metahpo.seeds import trial_seed


def told_at(rows: dict[int, dict], iterations: int, penalty_floor: float) -> tuple[list[dict], list[float]]:
    """Points and told values (log objective; a failure's penalty) of every trial that finished a rung.

    A trial that failed at the rung is told the log of the worse of ``penalty_floor`` and the worst
    value earlier trials reached there, as in the single-fidelity search.
    """
    key, points, values, finished = str(iterations), [], [], []
    for trial in sorted(rows):
        row = rows[trial]
        if key in row["rungs"]:
            value = statistics.fmean(row["rungs"][key])
            finished.append(value)
            values.append(math.log(max(value, SMALLEST_TOLD)))
        elif row["status"] == FAILED and row["iterations"] == iterations:
            values.append(math.log(max([penalty_floor, *finished])))
        else:
            continue
        points.append(row["point"])
    return points, values


def as_of(row: dict, iterations: int) -> dict:
    """A logged trial as it stood when it finished (or failed at) the rung of ``iterations``."""
    rungs = {k: v for k, v in row["rungs"].items() if int(k) <= iterations}
    out = {**row, "rungs": rungs, "iterations": iterations}
    if str(iterations) in rungs:
        values = rungs[str(iterations)]
        out |= {"status": PENDING, "objectives": values, "objective": statistics.fmean(values), "error": ""}
    return out


class RungSchedule:
    """Runs a search's trials bracket by bracket, rung by rung (see the module's description).

    ``search`` is the :class:`metahpo.search.driver.Search` whose proposer, executor settings, log and
    rows it uses. Points of a bracket are asked when it starts, from a surrogate fitted on the highest
    rung with enough observations for the proposer (BOHB's rule: dimensions + 1); with none, at random.
    States of unfinished trials are kept in ``search.checkpoints`` until the trial stops or finishes.
    """

    def __init__(self, search):
        self.search, settings = search, search.search
        self.eta = settings.eta
        self.rungs = rung_iterations(settings.iterations, settings.min_iterations, self.eta)
        most = len(search.proposer) + search.offset if hasattr(search.proposer, "__len__") else None
        self.plan = brackets(settings.fidelity, len(self.rungs), self.eta, settings.n_calls, most)

    def describe(self) -> str:
        """The plan in one line, for the log."""
        total = planned_iterations(self.plan, self.rungs, self.eta)
        return (
            f"{self.search.search.fidelity}: rungs of {', '.join(map(str, self.rungs))} iterations, "
            f"{len(self.plan)} brackets of {', '.join(str(b.size) for b in self.plan)} trials, "
            f"{total:,} trial-iterations if none fails"
        )

    def run(self) -> dict:
        """Run (or resume) every bracket; return the best trial that reached the last rung."""
        search = self.search
        reusable = search.log.reusable(search.key)
        if reusable:
            print(f"search: {len(reusable)} trials in {search.log.log} can be reused", file=sys.stderr)
        print(f"search: {self.describe()}", file=sys.stderr)
        total = planned_iterations(self.plan, self.rungs, self.eta)
        bar = tqdm(total=total, desc="search", unit="it", unit_scale=True, file=sys.stderr, mininterval=1.0)
        with TrialRunner(search.search.executor, search.search.workers, search.search.address) as runner:
            for bracket in self.plan:
                self._bracket(runner, bracket, reusable, bar)
        bar.close()
        shutil.rmtree(search.checkpoints, ignore_errors=True)
        search.log.write(search.rows, search.key, search.search.n_calls)
        return search.best()

    def _points(self, bracket: Bracket) -> list[dict]:
        """The bracket's points: the untuned setting first if it opens the search, then the proposer's."""
        search = self.search
        head = [search.default_point] if search.offset and bracket.first == 0 else []
        observed = ([], [])
        for iterations in reversed(self.rungs):
            points, values = told_at(search.rows, iterations, search.floor)
            if len(points) >= getattr(search.proposer, "needed", 0):
                observed = ([[p[n] for n in search.names] for p in points], values)
                break
        first = bracket.first + len(head) - search.offset
        rest = search.proposer.ask(bracket.size - len(head), first, observed) if bracket.size > len(head) else []
        return [dict(zip(search.names, x)) for x in head + rest]

    def _bracket(self, runner, bracket: Bracket, reusable: dict, bar) -> None:
        search, top = self.search, len(self.rungs) - 1
        points = dict(zip(bracket.trials, self._points(bracket)))
        alive = list(bracket.trials)
        for k in range(bracket.start, len(self.rungs)):
            iterations, previous = self.rungs[k], self.rungs[k - 1] if k > bracket.start else 0
            requests = {}
            for trial in alive:
                old = reusable.get(trial)
                if old is not None and old["point"] == points[trial] and self._reached(old, iterations):
                    search.rows[trial] = as_of(old, iterations)
                    bar.update(iterations - previous)
                else:
                    resume = self._load(trial, previous)
                    requests[trial] = search._request(trial, points[trial], stop_at=iterations, resume=resume)

            def done(trial: int, result, iterations=iterations, previous=previous) -> None:
                self._record(trial, result, points[trial], iterations)
                bar.update(iterations - previous)

            search._run_jobs(runner, requests, done)
            values = {t: search.rows[t]["objective"] if search.rows[t]["status"] != FAILED else math.nan for t in alive}
            keep = promoted(values, self.eta) if k < top else list(alive)
            for trial in alive:
                row = search.rows[trial]
                if row["status"] == PENDING:
                    row["status"] = OK if k == top else PENDING if trial in keep else STOPPED
                if row["status"] != PENDING:
                    self._checkpoint(trial).unlink(missing_ok=True)
            told_values(search.rows, search.floor)
            search.log.write(search.rows, search.key, search.search.n_calls)
            alive = keep

    @staticmethod
    def _reached(row: dict, iterations: int) -> bool:
        """Whether a logged trial finished, or failed at, the rung of ``iterations``."""
        return str(iterations) in row["rungs"] or (row["status"] == FAILED and row["iterations"] == iterations)

    def _record(self, trial: int, result, point: dict, iterations: int) -> None:
        search = self.search
        row = search.rows.get(trial) or {
            "point": point,
            "seed": trial_seed(search.seed, trial),
            "rungs": {},
            "curve": [],
            "stopped_at": 0,
            "seconds": 0.0,
        }
        row = {**row, "rungs": dict(row["rungs"]), "iterations": iterations, "error": result.error}
        row["seconds"] = round(row["seconds"] + result.seconds, 3)
        row["objectives"], row["objective"] = result.objectives, result.objective
        if result.status == OK:
            row["rungs"][str(iterations)] = result.objectives
            row["status"] = PENDING
        else:
            row["status"], row["objective"] = FAILED, math.nan
        if result.states:
            with atomic_path(self._checkpoint(trial)) as tmp, open(tmp, "wb") as fh:
                torch.save(result.states, fh)
        search._record(trial, row)

    def _checkpoint(self, trial: int) -> Path:
        return self.search.checkpoints / f"trial-{trial:05d}.pt"

    def _load(self, trial: int, step: int) -> dict | None:
        """The trial's training states at ``step``, or None to train from the start (same result, more work)."""
        path = self._checkpoint(trial)
        if step == 0 or not path.exists():
            return None
        try:
            states = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint only costs retraining
            print(f"search: {path} unreadable ({type(exc).__name__}), trial {trial} trains again", file=sys.stderr)
            return None
        return states if all(state["step"] == step for state in states.values()) else None
