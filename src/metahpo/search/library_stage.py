"""The search stage run by the search library: ``search.fidelity: asha`` or ``search.method: tpe``.

:func:`run_library` hands :func:`metahpo.search.multifidelity.minimize` an objective that runs one trial's
rung as a job on the stage's executors (the local process pool or Dask, with retries, as the Hyperband path
does), so the decisions (ASHA's promotions and new trials, per finished job) are the library's own.

* **The rungs** are those of ``search.iterations``, ``search.min_iterations`` and ``search.eta``. A rung
  continues from the trial's checkpoint of its previous rung (the mechanism of :mod:`metahpo.search.fidelity`).
  With ``search.fidelity_unit: compute`` they are compute, in iterations of the untuned setting: a setting
  trains as many iterations as cost the rung's compute (:func:`metahpo.learners.cost.trained_iterations`).
* **Compute**: ``asha`` spends what the Hyperband plan of ``search.n_calls`` trials would train, in iterations
  of the untuned setting. With rungs of iterations each of the plan's trials is priced at the mean cost of a
  setting of the space (below ``search.max_cost``): a job costs its iterations times the setting's estimated
  multiply-adds relative to the untuned setting's (:func:`metahpo.learners.cost.setting_macs`), so a costly
  setting uses more of the compute and a cheap one less. With rungs of compute a job costs its rung's
  compute. The other fidelities (with ``tpe``) run the whole brackets of their own plan of
  ``search.n_calls`` trials. Settings above ``search.max_cost`` are never proposed, and so never logged.
* **``search.start_from_default``**: trial 0 is the untuned setting (``minimize``'s ``x0``).
* **Determinism**: ``minimize`` decides in virtual time, so with ``search.workers > 1`` the jobs run at once
  while the log depends only on the params, never on which job really ends first (nor on the executor).
* **Durable log and resume**: each finished job is written at once to the trial log the Hyperband path
  writes. A rerun replays the search: a job whose (trial, rung) is in a reusable log returns the logged value
  instead of training, the decisions come up the same, and only jobs not in the log train.
* A failed job (divergence, a worker lost more than ``search.retries`` times) is a NaN value to ``minimize``
  and a failed row in the log; a trial left below the last rung when the search ends is logged as stopped.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import statistics
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future

from scipy.stats import qmc
from tqdm import tqdm

from metahpo.errors import InputError
from metahpo.executors import TrialRunner
from metahpo.learners import USED_ONLY_BY
from metahpo.search.fidelity import RungSchedule
from metahpo.search.multifidelity import minimize
from metahpo.search.rungs import as_of, brackets, planned_iterations, reached, rung_iterations
from metahpo.search.trial_log import OK, PENDING, STOPPED, UNSCORED, told_values
from metahpo.search.unit_space import UnitSpace, derived_seed

COST_SAMPLE = 256  # settings of the space whose mean cost prices a trial of the equivalent hyperband plan


def mean_cost(space: dict, active: dict | None, relative, max_cost: float | None, seed: int) -> float:
    """Mean ``relative`` cost of a scrambled Sobol sample of the settings of ``space`` at most ``max_cost``."""
    unit = UnitSpace(space, active)
    sample = qmc.Sobol(len(unit.names), scramble=True, seed=derived_seed(seed, 11)).random(COST_SAMPLE)
    costs = [c for c in (relative(unit.setting(u)) for u in sample) if max_cost is None or c <= max_cost]
    return statistics.fmean(costs) if costs else 1.0


def library_plan(search, price=None, seed: int = 0) -> dict:
    """The rungs and the amount of search (``compute`` for ``asha``, else ``n_trials``) for ``search`` params.

    ``compute`` is the trial-iterations of the hyperband plan of ``search.n_calls`` trials, each priced at the
    mean cost (:func:`mean_cost`, with ``price`` the relative cost of a setting; 1 without it, or with rungs of
    compute, ``search.fidelity_unit: compute``) of a setting of ``search.space``: what that plan would spend with
    its trials spread over the space.
    """
    rungs = (
        [search.iterations]
        if search.fidelity == "none"
        else rung_iterations(search.iterations, search.min_iterations, search.eta)
    )
    plan = brackets("hyperband" if search.fidelity == "asha" else search.fidelity, len(rungs), search.eta,
                    search.n_calls)  # fmt: skip
    if search.fidelity != "asha":
        return {"rungs": rungs, "compute": None, "n_trials": sum(b.size for b in plan), "mean_cost": None}
    if price is None or search.fidelity_unit == "compute":  # a rung of compute costs its compute, whatever setting
        each = 1.0
    else:
        each = mean_cost(search.space, _active(search.space), price, search.max_cost, seed)
    trial_iterations = planned_iterations(plan, rungs, search.eta)
    return {"rungs": rungs, "compute": trial_iterations * each, "n_trials": None, "mean_cost": each}


class SharedRunner:
    """A :class:`~metahpo.executors.TrialRunner` that several jobs' threads use at once.

    ``run_jobs`` of every in-flight job submits here; when a local pool breaks, each of them asks for a
    restart, and only the first (for the pool it submitted to) replaces it. Once closed (the search
    ended or was interrupted) nothing more is submitted.
    """

    def __init__(self, runner: TrialRunner):
        self.runner, self.lock, self.generation, self.closed = runner, threading.Lock(), 0, False
        self.mine = threading.local()

    def submit(self, fn, *args):
        with self.lock:
            if self.closed:
                raise RuntimeError("search: the search ended; no job is started")
            self.mine.generation = self.generation
            return self.runner.submit(fn, *args)

    def restart(self) -> None:
        with self.lock:
            if not self.closed and getattr(self.mine, "generation", self.generation) == self.generation:
                self.runner.restart()
                self.generation += 1

    def close(self) -> None:
        with self.lock:
            self.closed = True


class _Rungs(RungSchedule):
    """The Hyperband path's rung records and checkpoints (``_record``, ``_load``), without its brackets."""

    def __init__(self, search):  # noqa: D107 - no bracket plan: the library decides the jobs
        self.search = search


def in_thread(fn, *args) -> Future:
    """A future of ``fn(*args)`` run in a new daemon thread: an interrupted search does not wait for it to end."""
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to minimize through the future
            future.set_exception(exc)

    threading.Thread(target=work, name="search-job", daemon=True).start()
    return future


class LibraryObjective:
    """``minimize``'s objective: one rung of one trial, replayed from the log or run as a job.

    Trials are numbered in the order their first job starts, which is ``minimize``'s own numbering (it
    never proposes a setting twice, so a setting names its trial).
    """

    def __init__(self, search, runner, threads: bool, reusable: dict, bar):
        self.search, self.runner, self.threads, self.reusable, self.bar = search, runner, threads, reusable, bar
        self.rungs = _Rungs(search)
        self.trials: dict[str, int] = {}
        self.lock = threading.Lock()  # rows and the log are written from the jobs' threads
        self.replayed = 0

    def trial_of(self, setting: dict) -> int:
        return self.trials.setdefault(json.dumps(setting, sort_keys=True), len(self.trials))

    def __call__(self, setting: dict, budget: int, state):
        trial = self.trial_of(setting)
        search = self.search
        old = self.reusable.get(trial)
        if old is not None and old["point"] == setting and reached(old, budget):
            row = as_of(old, budget)
            with self.lock:
                search.rows[trial] = row
                self.replayed += 1
            self.bar.update()
            return (math.nan if row["status"] in UNSCORED else row["objective"]), None
        with self.lock:
            earlier = search.rows.get(trial)
        previous = max((int(r) for r in earlier["rungs"]), default=0) if earlier else 0
        request = search._request(trial, setting, stop_at=budget, resume=self.rungs._load(trial, setting, previous))
        if not self.threads:  # one worker: in this thread, so that an interrupt stops the job at once
            return self._job(trial, request, budget)
        return in_thread(self._job, trial, request, budget)

    def _job(self, trial: int, request, budget: int) -> tuple[float, None]:
        results = []
        self.search._run_jobs(self.runner, {trial: request}, lambda t, r: results.append(r))
        (result,) = results
        with self.lock:  # the log first, then the value: a killed search keeps every job that ended
            self.rungs._record(trial, result, request.point, budget)
        self.bar.update()
        return (result.objective if result.status == OK else math.nan), None


def _active(space: dict) -> dict | None:
    """``minimize``'s ``active``: the dimensions only some algorithms read (with an ``algorithm`` dimension)."""
    if "algorithm" not in space:
        return None
    return {name: list(USED_ONLY_BY[name]) for name in space if name in USED_ONLY_BY}


def price_of(search) -> Callable[[dict], float]:
    """``setting -> cost per iteration relative to the untuned setting`` for a :class:`Search`, cached per setting."""

    @functools.cache
    def relative(key: str) -> float:
        return search.cost(json.loads(key)) / search.baseline_cost

    return lambda setting: relative(json.dumps(setting, sort_keys=True))


def run_library(search) -> dict:
    """Run (or resume) the search of :class:`metahpo.search.driver.Search` ``search`` with ``minimize``."""
    settings = search.search
    price = price_of(search)
    plan = library_plan(settings, price, search.seed)
    reusable = search.log.reusable(search.key)
    if reusable:
        print(f"search: {len(reusable)} trials in {search.log.log} can be reused", file=sys.stderr)
    compute_rungs = settings.fidelity_unit == "compute"
    if plan["compute"] is None:
        amount = f"{plan['n_trials']} trials"
    elif compute_rungs:
        amount = f"{plan['compute']:,.0f} untuned-setting iterations (the hyperband plan of {settings.n_calls} trials)"
    else:
        amount = (
            f"{plan['compute']:,.0f} untuned-setting iterations (the hyperband plan of {settings.n_calls} trials, "
            f"each at the space's mean cost, {plan['mean_cost']:.2f}x the untuned setting's)"
        )
    unit = "untuned-setting iterations of compute" if compute_rungs else "iterations"
    print(f"search: {settings.method} with {settings.fidelity}, rungs of {', '.join(map(str, plan['rungs']))} "
          f"{unit}, {amount}" + (", the untuned setting first" if settings.start_from_default else ""),
          file=sys.stderr)  # fmt: skip

    bar = tqdm(desc="search", unit="job", file=sys.stderr, mininterval=1.0)
    threads = settings.workers > 1  # each job waits for its result in a thread of its own
    with TrialRunner(settings.executor, settings.workers, settings.address, settings.tls) as runner:
        if threads:
            runner.start()  # here, not in a job's thread (see TrialRunner.start)
        shared = SharedRunner(runner)
        objective = LibraryObjective(search, shared, threads, reusable, bar)
        try:
            result = minimize(
                objective,
                settings.space,
                max_budget=plan["rungs"][-1],
                min_budget=settings.min_iterations,
                eta=settings.eta,
                compute=plan["compute"],
                n_trials=plan["n_trials"],
                method=settings.method,
                fidelity=settings.fidelity,
                workers=settings.workers,
                seed=search.seed,
                active=_active(settings.space),
                cost=price,
                max_cost=settings.max_cost,
                x0=[search.default_setting()] if settings.start_from_default else None,
                budget_unit=settings.fidelity_unit,
                n_initial=settings.n_initial_points,
            )
        finally:
            shared.close()  # an interrupted search's job threads submit nothing more
    bar.close()
    search.history = result.history
    for entry in result.history:  # the objective's numbering is minimize's (see LibraryObjective)
        if objective.trial_of(entry["setting"]) != entry["trial"]:
            raise RuntimeError(f"search: trial {entry['trial']} of the library is not the stage's trial")
    top = str(plan["rungs"][-1])
    for row in search.rows.values():
        if row["status"] == PENDING:
            row["status"] = OK if top in row["rungs"] else STOPPED
    told_values(search.rows, search.floor)
    search.log.write(search.rows, search.key, settings.n_calls)
    if objective.replayed:
        print(f"search: {objective.replayed} jobs replayed from the log, not trained again", file=sys.stderr)
    statuses = {row["status"] for row in search.rows.values()}
    if STOPPED in statuses and OK not in statuses:  # the checkpoints stay: a rerun with more continues them
        raise InputError(
            f"params.yaml: search.n_calls: {settings.n_calls} gives {settings.fidelity} too little compute for any "
            f"trial to reach search.iterations ({settings.iterations}); raise it (every finished job is reused)"
        )
    shutil.rmtree(search.checkpoints, ignore_errors=True)
    return search.best()
