"""The multi-fidelity schedule: a search's trials run bracket by bracket, rung by rung.

The rung and bracket arithmetic is in :mod:`metahpo.search.rungs`. Points of a bracket are asked when it
starts; promotions are decided once a rung is complete, so the log depends only on the params. Each
trial's rung is written to the log as it finishes and its training states to a checkpoint, so a killed
search resumes without rerunning a finished rung.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from metahpo.atomic import write_bytes
from metahpo.errors import OutputError, first_line
from metahpo.executors import TrialRunner
from metahpo.learners.cost import trained_iterations
from metahpo.learners.settings import apply_point
from metahpo.search.rungs import (
    Bracket,
    as_of,
    brackets,
    planned_iterations,
    promoted,
    reached,
    rung_iterations,
    snapped_rung,
    told_at,
)
from metahpo.search.trial_log import FAILED, OK, PENDING, STOPPED, log_row, told_values
from metahpo.seeds import trial_seed


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
        self.plan = brackets(settings.fidelity, len(self.rungs), self.eta, settings.n_calls, search.most)
        self.total = planned_iterations(self.plan, self.rungs, self.eta)

    def describe(self) -> str:
        """The plan in one line, for the log (naming a rung merged into the last one)."""
        settings = self.search.search
        snapped = snapped_rung(settings.iterations, settings.min_iterations, self.eta)
        merged = f" ({snapped} merged into {settings.iterations})" if snapped else ""
        return (
            f"{settings.fidelity}: rungs of {', '.join(map(str, self.rungs))} iterations{merged}, "
            f"{len(self.plan)} brackets of {', '.join(str(b.size) for b in self.plan)} trials, "
            f"{self.total:,} trial-iterations if none fails"
        )

    def run(self) -> dict:
        """Run (or resume) every bracket; return the best trial that reached the last rung."""
        search = self.search
        reusable = search.log.reusable(search.key)
        if reusable:
            print(f"search: {len(reusable)} trials in {search.log.log} can be reused", file=sys.stderr)
        print(f"search: {self.describe()}", file=sys.stderr)
        bar = tqdm(total=self.total, desc="search", unit="it", unit_scale=True, file=sys.stderr, mininterval=1.0)
        settings = search.search
        with TrialRunner(settings.executor, settings.workers, settings.address, settings.tls) as runner:
            for bracket in self.plan:
                self._bracket(runner, bracket, reusable, bar)
        bar.close()
        shutil.rmtree(search.checkpoints, ignore_errors=True)
        return search.best()

    def _points(self, bracket: Bracket) -> list[dict]:
        """The bracket's points, the surrogate fitted on the highest rung with enough observations."""
        search = self.search
        observed = ([], [])
        for iterations in reversed(self.rungs):
            points, values = told_at(search.rows, iterations, search.floor)
            if len(points) >= getattr(search.proposer, "needed", 0):
                observed = ([[p[n] for n in search.names] for p in points], values)
                break
        return [dict(zip(search.names, x)) for x in search._ask(bracket.size, bracket.first, observed)]

    def _bracket(self, runner, bracket: Bracket, reusable: dict, bar) -> None:
        search, top = self.search, len(self.rungs) - 1
        points = dict(zip(bracket.trials, self._points(bracket)))
        alive = list(bracket.trials)
        for k in range(bracket.start, len(self.rungs)):
            iterations, previous = self.rungs[k], self.rungs[k - 1] if k > bracket.start else 0
            requests = {}
            for trial in alive:
                old = reusable.get(trial)
                if old is not None and old["point"] == points[trial] and reached(old, iterations):
                    search.rows[trial] = as_of(old, iterations)
                    bar.update(iterations - previous)
                elif search.too_costly(points[trial]):  # only at the bracket's first rung: it is never promoted
                    search.refuse(trial, points[trial], iterations)
                    bar.update(iterations - previous)
                else:
                    resume = self._load(trial, points[trial], previous)
                    requests[trial] = search._request(trial, points[trial], stop_at=iterations, resume=resume)

            def done(trial: int, result, iterations=iterations, previous=previous) -> None:
                self._record(trial, result, points[trial], iterations)
                bar.update(iterations - previous)

            search._run_jobs(runner, requests, done)
            keep = promoted({t: search.rows[t]["objective"] for t in alive}, self.eta) if k < top else list(alive)
            for trial in alive:
                row = search.rows[trial]
                if row["status"] == PENDING:
                    row["status"] = OK if k == top else PENDING if trial in keep else STOPPED
                if row["status"] != PENDING:
                    with contextlib.suppress(OSError):  # an unwritable cache/ holds no checkpoint to remove
                        self._checkpoint(trial).unlink(missing_ok=True)
            told_values(search.rows, search.floor)
            search.log.write(search.rows, search.key, search.search.n_calls)
            alive = keep

    def _record(self, trial: int, result, point: dict, iterations: int) -> None:
        """Log a trial's rung (its earlier rungs and seconds kept) and checkpoint its training states."""
        search = self.search
        row = log_row(result, point, trial_seed(search.seed, trial), iterations, search.cost(point))
        if trial in search.rows:
            earlier = search.rows[trial]
            row["rungs"] = {**earlier["rungs"], **row["rungs"]}
            row["seconds"] = round(earlier["seconds"] + result.seconds, 3)
        row["status"] = PENDING if result.status == OK else FAILED
        search._record(trial, row)  # the log first: a checkpoint that cannot be written only costs retraining
        if result.states:
            buffer = io.BytesIO()
            torch.save({"search": search.key, "trial": trial, "point": point, "states": result.states}, buffer)
            try:
                write_bytes(self._checkpoint(trial), buffer.getvalue())
            except (OSError, OutputError) as exc:
                print(f"search: {first_line(exc)}; trial {trial}'s next rung trains from the start", file=sys.stderr)

    def _checkpoint(self, trial: int) -> Path:
        return self.search.checkpoints / f"trial-{trial:05d}.pt"

    def _load(self, trial: int, point: dict, rung: int) -> dict | None:
        """The trial's training states after ``rung``, or None to train from the start (same result, more work).

        A checkpoint is used only if this search (the same fingerprint) wrote it for this trial and point,
        with one state per training at that rung's step; a state that still does not fit the learner is
        discarded by the worker (:class:`metahpo.learners.metatrain.StateError`).
        """
        path = self._checkpoint(trial)
        if rung == 0 or not path.exists():
            return None
        search = self.search
        step = trained_iterations(apply_point(search.params, point), search.params, rung)
        trainings = range(len(search.folds) * search.params.search.repeats)
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            mine = saved["search"] == search.key and saved["trial"] == trial and saved["point"] == point
            states = saved["states"] if mine else None
            if mine and not (
                isinstance(states, dict)
                and set(states) == set(trainings)
                and all(
                    isinstance(s, dict) and type(s.get("step")) is int and s["step"] == step for s in states.values()
                )
            ):
                raise ValueError("states of other trainings or steps")
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint only costs retraining
            print(f"search: {path} unreadable ({type(exc).__name__}), trial {trial} trains again", file=sys.stderr)
            return None
        if not mine:
            print(f"search: {path} is another trial's or search's, trial {trial} trains again", file=sys.stderr)
        return states
