"""The search stage: batches of trials asked from a proposer, run on an executor, told back in order.

Each trial meta-trains a setting for ``search.iterations`` iterations and is scored on meta_val
(never meta_test): the grid MSE (classification: cross-entropy or error rate) after
``search.objective_steps`` adaptation steps, averaged over ``search.repeats`` training seeds (one by
default) and, for classification, over ``search.class_folds`` class folds (the stored meta_val
first; see :mod:`metahpo.search.class_folds`). The proposer is told ``log(MSE)``: MSEs span orders
of magnitude, and a surrogate fitted on the log scale models the good region instead of the
outliers. A failed trial (NaN/inf, an exception, a result that is not plain data, its worker lost
alone more than ``search.retries`` times) is told a penalty, the log of the worse of the zero
predictor's MSE and the worst finished earlier trial, so the surrogate learns to avoid the region
without being swamped. A trial stopped by the median rule is told the value at which it stopped.
Neither can be the best setting.

``search.workers`` trials are asked at once (skopt's constant liar for ``gp`` and ``forest``) and
told back in ask order once all of them finish, so the trials depend only on the params, never on
which worker finishes first (nor on ``n_calls``: the last batch is asked whole). A trial of several
trainings (class folds, repeats) runs as one job per training, so a batch's trainings spread over the
workers. Every finished trial is written to the
log at once; a rerun with the same params replays the log instead of rerunning finished trials,
and a larger ``n_calls`` reuses every finished trial and runs only the new ones. With
``search.start_from_default`` trial 0 is the untuned setting, so with one fidelity the best setting
never scores worse than the baseline (with rungs it competes for promotion like any trial).

With ``search.fidelity: asha`` or ``search.method: tpe`` the search library decides the jobs instead, per
finished job (:mod:`metahpo.search.library_stage`), on the same executors and into the same log.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from metahpo import paths
from metahpo.atomic import write_json
from metahpo.errors import DivergenceError, InputError, first_line
from metahpo.executors import TrialRunner, is_lost_worker, run_jobs
from metahpo.learners.cost import cheapest_macs, setting_macs
from metahpo.learners.family import family_of
from metahpo.learners.memory import check_fits, check_workers, largest_settings, local_workers
from metahpo.learners.settings import apply_point, default_setting
from metahpo.params import Params
from metahpo.search import runs_library
from metahpo.search.class_folds import class_folds
from metahpo.search.fidelity import RungSchedule
from metahpo.search.library_stage import run_library
from metahpo.search.proposers import build_space, make_proposer, pin_inactive
from metahpo.search.trial import (
    TrialRequest,
    TrialResult,
    median_reference,
    merge_results,
    plain_trial,
    run_trial,
    split_request,
)
from metahpo.search.trial_log import FAILED, OK, TOO_COSTLY, UNSCORED, TrialLog, fingerprint, log_row, told_values
from metahpo.seeds import trial_seed
from metahpo.tasks.storage import check_generated_with, load_split


class Search:
    """One search run: the proposer, the executor, the log, and the rows finished so far."""

    def __init__(
        self,
        params: Params,
        data: dict,
        penalty_floor: float,
        directory: Path,
        manifest: Path,
        trial_fn=run_trial,
        checkpoints: Path | None = None,
    ):
        self.params, self.search, self.seed = params, params.search, params.seed
        self.checkpoints = Path(checkpoints) if checkpoints is not None else Path(directory) / "checkpoints"
        self.trial_fn = trial_fn
        self.floor = penalty_floor
        self.folds = class_folds(data["meta_train"], data["meta_val"], self.search.class_folds, self.seed)
        self.names = list(self.search.space)
        # The search library (search.fidelity: asha, search.method: tpe) brings its own proposer.
        library = runs_library(self.search)
        self.proposer = None if library else make_proposer(self.search, self.seed, refit=self.search.fidelity != "none")
        # With start_from_default, trial 0 is the untuned setting and the proposer's trials shift by one.
        self.offset = int(self.search.start_from_default)
        self.default_point = pin_inactive(
            [default_setting(params)[name] for name in self.names], build_space(self.search.space)
        )
        # A grid has a size: the most trials a search can run.
        self.most = len(self.proposer) + self.offset if hasattr(self.proposer, "__len__") else None
        self.total = self.search.n_calls if self.most is None else min(self.search.n_calls, self.most)
        self.log = TrialLog(directory, self.names, print_fn=lambda m: print(m, file=sys.stderr))
        self.key = fingerprint(params, manifest)
        self.rows: dict[int, dict] = {}
        self.baseline_cost = setting_macs(default_setting(params), params)
        self.history: list[dict] | None = None  # the library's finished jobs in decision order (asha, tpe)

    def default_setting(self) -> dict:
        """The untuned setting as a point of the search (its inactive dimensions pinned), name -> value."""
        return dict(zip(self.names, self.default_point))

    def cost(self, point: dict) -> int:
        """Estimated multiply-adds of one meta-iteration of ``point``'s setting."""
        return setting_macs(apply_point(self.params, point), self.params)

    def too_costly(self, point: dict) -> bool:
        """Whether ``point`` costs more per meta-iteration than ``search.max_cost`` times the untuned setting."""
        cap = self.search.max_cost
        return cap is not None and self.cost(point) > cap * self.baseline_cost

    def refuse(self, trial: int, point: dict, iterations: int) -> None:
        """Log a setting above ``search.max_cost`` as too costly (at the rung of ``iterations``) without training it.

        It is told a failure's penalty (see :func:`metahpo.search.trial_log.told_values`), so the surrogate
        learns to avoid the costly region on the scale of the objectives it has seen.
        """
        cost = self.cost(point)
        error = (
            f"estimated {cost:,} multiply-adds per meta-iteration, {cost / self.baseline_cost:.2f}x the untuned "
            f"setting's, above search.max_cost ({self.search.max_cost:g}x); not trained"
        )
        result = TrialResult(trial, TOO_COSTLY, error=error)
        self._record(trial, log_row(result, point, trial_seed(self.seed, trial), iterations, cost))

    def _record(self, trial: int, row: dict) -> None:
        self.rows[trial] = row
        told_values(self.rows, self.floor)
        self.log.write(self.rows, self.key, self.search.n_calls)

    def _request(self, trial: int, point: dict, medians=None, stop_at=None, resume=None) -> TrialRequest:
        return TrialRequest(
            trial, point, trial_seed(self.seed, trial), self.params, self.folds, medians, stop_at=stop_at, resume=resume
        )

    def _ask(self, n: int, first: int, observed=None) -> list[list]:
        """The points of trials ``first`` .. ``first + n - 1`` (the untuned setting first, with start_from_default).

        ``observed`` (points, told values) is what a refitted surrogate learns from (multi-fidelity search).
        """
        head = [self.default_point] if self.offset and first == 0 else []
        rest = n - len(head)
        return head + (self.proposer.ask(rest, first + len(head) - self.offset, observed) if rest else [])

    def _run_jobs(self, runner: TrialRunner, requests: dict[int, TrialRequest], done) -> None:
        """Run ``requests`` on ``runner``, retrying work whose worker died; ``done(trial, result)`` as each finishes.

        A trial of several trainings (folds, repeats) is submitted as one unit per training, so the
        batch's trainings share the workers instead of each worker waiting for the slowest trial. At most
        ``search.workers`` units are in flight, so each finished one is recorded before the next starts
        (with one worker, in this process, a kill loses only the unit that was running). What a worker
        hands back is checked as plain data (:meth:`TrialResult.from_plain`); anything else fails the trial.
        """
        units = {(t, j): unit for t, r in requests.items() for j, unit in enumerate(split_request(r))}
        expected = Counter(t for t, _ in units)
        parts: dict[int, dict[int, TrialResult]] = defaultdict(dict)

        def finished(key, value, exc) -> None:
            trial, part = key
            if exc is None:
                try:
                    result = TrialResult.from_plain(value, trial)
                except ValueError as refused:
                    result = TrialResult(trial, FAILED, error=str(refused))
            elif is_lost_worker(exc):
                result = TrialResult(trial, FAILED, error=f"worker lost: {type(exc).__name__}: {first_line(exc)}")
            else:
                result = TrialResult(trial, FAILED, error=first_line(exc))
            parts[trial][part] = result
            if len(parts[trial]) == expected[trial]:
                done(trial, merge_results([parts[trial][j] for j in sorted(parts[trial])]))

        jobs = {key: (plain_trial, self.trial_fn, unit) for key, unit in units.items()}
        run_jobs(runner, jobs, self.search.workers, self.search.retries, finished)

    def run(self) -> dict:
        """Run (or resume) every trial; return the best finished one."""
        if runs_library(self.search):
            return run_library(self)
        if self.search.fidelity != "none":
            return RungSchedule(self).run()
        reusable = self.log.reusable(self.key)
        if reusable:
            print(f"search: {len(reusable)} finished trials in {self.log.log} can be reused", file=sys.stderr)
        rule, workers = self.search.median_stop, self.search.workers
        bar = tqdm(total=self.total, desc="search", unit="trial", file=sys.stderr)
        with TrialRunner(self.search.executor, workers, self.search.address, self.search.tls) as runner:
            for first in range(0, self.total, workers):
                # A whole batch is asked even where n_calls ends inside it, so the trials do not depend on
                # n_calls: a larger n_calls later reuses every trial of this run.
                asked = self._ask(workers if self.most is None else min(workers, self.most - first), first)
                points = asked[: self.total - first]
                curves = [self.rows[t]["curve"] for t in sorted(self.rows) if self.rows[t]["status"] not in UNSCORED]
                medians = median_reference(curves, rule.min_trials) if rule.enabled else None
                requests = {}
                for trial, x in enumerate(points, start=first):
                    point = dict(zip(self.names, x))
                    if trial in reusable and reusable[trial]["point"] == point:
                        self.rows[trial] = reusable[trial]
                        bar.update()
                    elif self.too_costly(point):
                        self.refuse(trial, point, self.search.iterations)
                        bar.update()
                    else:
                        requests[trial] = self._request(trial, point, medians)
                told_values(self.rows, self.floor)

                def done(trial: int, result: TrialResult, requests=requests) -> None:
                    request = requests[trial]
                    row = log_row(result, request.point, request.seed, self.search.iterations, self.cost(request.point))
                    self._record(trial, row)
                    bar.update()
                    bar.set_postfix(best=f"{self.rows[trial]['best_so_far']:.4f}")

                self._run_jobs(runner, requests, done)
                self.proposer.tell(points, [self.rows[t]["told"] for t in range(first, first + len(points))])
        bar.close()
        self.log.write(self.rows, self.key, self.search.n_calls)
        return self.best()

    def best(self) -> dict:
        """The finished (not failed, not stopped) trial with the lowest objective."""
        ok = [t for t in sorted(self.rows) if self.rows[t]["status"] == OK]
        if not ok:
            counts = Counter(self.rows[t]["status"] for t in sorted(self.rows))
            if set(counts) == {TOO_COSTLY}:
                raise InputError(
                    f"params.yaml: search.max_cost: all {len(self.rows)} trials were above it, so none was trained; "
                    "raise it or narrow search.space"
                )
            each = ", ".join(f"{n} {status}" for status, n in counts.items())
            costly = " under search.max_cost" if TOO_COSTLY in counts else ""
            raise DivergenceError(f"all {len(self.rows)} trials failed, stopped or were too costly{costly} ({each}); "
                                  f"see {self.log.log}")  # fmt: skip
        trial = min(ok, key=lambda t: self.rows[t]["objective"])
        row = self.rows[trial]
        return {"trial": trial, "objective": row["objective"], "point": row["point"], "seed": row["seed"]}


def write_best(path: Path, params: Params, best: dict) -> None:
    """Write the winning trial and its full resolved setting for the train stage."""
    write_json(path, {**best, "setting": apply_point(params, best["point"])})


def check_affordable(params: Params) -> None:
    """Refuse a ``search.max_cost`` below the cheapest setting of ``search.space``: every trial would be refused."""
    cap = params.search.max_cost
    baseline, cheapest = setting_macs(default_setting(params), params), cheapest_macs(params)
    if cap is not None and cheapest > cap * baseline:
        raise InputError(
            f"params.yaml: search.max_cost: {cap:g}x the untuned setting's estimated cost ({baseline:,} multiply-adds "
            f"per meta-iteration) is below the cheapest setting of search.space ({cheapest / baseline:.2f}x), so "
            "every trial would be refused; raise it or widen search.space"
        )


def search_stage(params: Params, device: torch.device) -> None:
    """DVC stage ``search``: the trial log and the best setting under ``reports/search``."""
    check_generated_with(paths.TASKS, params.tasks, params.seed)
    check_workers(params.search)
    copies = local_workers(params.search) if device.type == "cpu" else 1
    keys = "search.space (largest meta_batch_size, inner_steps, hidden, layers, query, representation or rule_hidden)"
    for setting in largest_settings(default_setting(params), params.search.space):
        check_fits(setting, params, device, keys + (" or search.workers" if copies > 1 else ""), copies=copies)
    check_affordable(params)
    family = family_of(params)
    data = {name: load_split(paths.TASKS, name) for name in ("meta_train", "meta_val")}
    floor = family.penalty_floor(data["meta_val"])
    best = Search(params, data, floor, paths.SEARCH, paths.TASKS / "manifest.json", checkpoints=paths.CHECKPOINTS).run()
    write_best(paths.BEST, params, best)
    print(f"best trial {best['trial']}: {family.objective_name()} {best['objective']:.4f} with {best['point']}",
          file=sys.stderr)  # fmt: skip
