"""Multi-fidelity search as a library: one GP over settings and budgets, decided per job.

:func:`minimize` runs any objective ``f(setting, budget, state) -> (value, state)`` in rungs of budget
(``min_budget * eta**k``, then ``max_budget``) and returns the best setting and the full history.

* **Surrogate** (``method="gp"``): one Gaussian process over (setting, log budget), built from
  scikit-optimize's parts (``skopt.learning.GaussianProcessRegressor``, a Matern 5/2 kernel with one length
  scale per input, learned noise), refitted before every decision on every rung of every trial, stopped
  and failed ones included (a failure is told the worst value seen). Expected improvement
  (``skopt.acquisition.gaussian_ei``) scores a candidate at the full budget, as MOBSTER and FABOLAS do.
* **Schedule** (``fidelity="asha"``): asynchronous successive halving (Li et al. 2020). Each time a job
  ends, a trial in the top ``1/eta`` of its rung is promoted to the next one (ranked by the GP's prediction
  at the full budget, given the trial's own rungs, because learning curves cross); otherwise a new trial
  starts at the first rung. With ``brackets=k`` (asynchronous Hyperband, Li et al. 2020) a new trial
  starts at one of the first ``k`` rungs, the one whose share of the trials started is furthest below
  Hyperband's (``ceil(n / (s + 1) * eta**s)`` trials for the bracket that starts ``s`` rungs below the top), and
  is promoted only against the trials that started at the same rung. ``hyperband`` and
  ``successive_halving`` run whole brackets, asked at the bracket's start; ``none`` trains every trial at
  ``max_budget``.
* **Acquisition optimiser** on the real space: scrambled Sobol points over the continuous dimensions for
  every combination of categories, plus perturbations of the best trials and of the best candidates;
  inactive dimensions are pinned *before* duplicates are removed, a setting already observed or pending is
  never proposed, nor one above ``max_cost``. Points proposed while others run come from a kriging
  believer: the running jobs are added to the GP as observations of its own mean.
* **Determinism**: with ``workers > 1`` jobs run in *virtual* time (a job lasts the iterations it adds to
  its trial, its whole budget for a trial's first job, times the setting's cost; with ``budget_unit="compute"``
  the budget it adds); the objective is called
  when a job starts and its value is revealed to the decisions when the job ends. The history therefore
  depends only on the arguments, never on a clock.
* **Real parallelism**: the objective may return a future (anything with ``.result()`` giving the
  ``(value, state)`` pair) instead of the pair itself, e.g. ``executor.submit(train, ...)``. The jobs
  then run at once on the executor, while the decisions still follow virtual time: the job predicted to
  end first is waited for first, whichever really ends first, so the history is the one the synchronous
  objective gives.
"""

from __future__ import annotations

import heapq
import importlib.util
import math
import numbers
from dataclasses import dataclass, field

from threadpoolctl import threadpool_limits

from metahpo.search.joint_gp import Proposer
from metahpo.search.plan import plan_problems, rung_iterations
from metahpo.search.rungs import bracket_shape, promoted
from metahpo.search.unit_space import UnitSpace

METHODS = ("gp", "tpe", "random")
FIDELITIES = ("asha", "hyperband", "successive_halving", "none")
BUDGET_UNITS = ("iterations", "compute")
OK, FAILED = "ok", "failed"

# The GP method's choices, each a keyword of minimize() so that an ablation can switch it off.
GP_OPTIONS = {
    "transform": "log",  # log (log, or Yeo-Johnson where a value is <= 0) | power (Box-Cox/Yeo-Johnson) | none
    "initial": "sobol",  # sobol | random: the design before the GP takes over
    "n_initial": None,  # trials of that design; None: number of dimensions + 1
    "promote_by": "gp",  # gp (predicted full-budget value) | rung (the value at the rung)
    "parallel": "believer",  # believer (kriging believer) | none (pending jobs ignored, duplicates still never)
    "candidates": 256,  # Sobol points per combination of categories
    "length_scale_bounds": (0.05, 20.0),  # on inputs scaled to [0, 1]
    "xi": 0.1,  # expected improvement's margin, in the transformed values' units (log: 0.1 is about 10%)
    "random_every": 0,  # k > 0: after the design, every k-th new trial is a design point (BOHB: 3), not the model's
    "brackets": 1,  # asha, any method; k > 1: asynchronous Hyperband, new trials also start at rungs 1 .. k-1
}
CHOICES = {
    "transform": ("log", "power", "none"),
    "initial": ("sobol", "random"),
    "promote_by": ("gp", "rung"),
    "parallel": ("believer", "none"),
}


@dataclass
class SearchResult:
    """What :func:`minimize` returns.

    ``best``: ``{"trial", "setting", "value", "budget"}``, the lowest value among the trials that reached
    the highest budget any trial reached (``max_budget`` once one did). ``history``: one entry per finished
    job, in decision order. ``rungs``: the rung plan used.
    """

    best: dict
    history: list[dict]
    rungs: list[int]


# --- trials and schedules ----------------------------------------------------------------------------------


@dataclass
class Trial:
    """One setting and what its rungs gave."""

    setting: dict
    values: dict[int, float] = field(default_factory=dict)  # rung index -> value
    state: object = None
    pending: int | None = None  # rung index running
    start: int = 0  # rung index it started at (its bracket, in asynchronous Hyperband)


class Scheduler:
    """The decisions: which job runs next, given every finished job so far."""

    def __init__(self, rungs, eta, fidelity, proposer, space, limit_trials, options):
        self.rungs, self.eta, self.fidelity = rungs, eta, fidelity
        self.proposer, self.space, self.limit_trials, self.options = proposer, space, limit_trials, options
        self.trials: dict[int, Trial] = {}
        self.brackets = 0
        self.queue: list[tuple[int, int]] = []  # (trial, rung) waiting to start (synchronous brackets)
        self.alive: list[int] = []
        self.rung = 0

    def observed(self) -> list[tuple[dict, int, float]]:
        """Every finished rung of every trial, in trial then rung order."""
        return [
            (t.setting, self.rungs[k], v) for _, t in sorted(self.trials.items()) for k, v in sorted(t.values.items())
        ]

    def pending(self) -> list[tuple[dict, int]]:
        return [(t.setting, self.rungs[t.pending]) for _, t in sorted(self.trials.items()) if t.pending is not None]

    def taken(self) -> set:
        return {self.space.key(t.setting) for t in self.trials.values()}

    def _new(self) -> tuple[int, int] | None:
        trial = len(self.trials)
        if self.limit_trials is not None and trial >= self.limit_trials:
            return None
        setting = self.proposer.propose(trial, self.observed(), self.pending(), self.taken())
        start = self._start_rung() if self.fidelity == "asha" else 0
        self.trials[trial] = Trial(setting, start=start)
        return trial, start

    def _start_rung(self) -> int:
        """The rung a new trial starts at: the bracket furthest below Hyperband's share of trials (ties: lowest)."""
        n = len(self.rungs)
        count = [0] * n
        for t in self.trials.values():
            count[t.start] += 1
        shares = [bracket_shape("hyperband", n, self.eta, start)[0] for start in range(n)]
        usable = range(min(self.options["brackets"], n))
        return min(usable, key=lambda start: ((count[start] + 1) / shares[start], start))

    def next_job(self) -> tuple[int, int] | None:
        """``(trial, rung)`` to start now, or None to wait for a running job (or to end)."""
        job = self._asha() if self.fidelity in ("asha", "none") else self._bracket()
        if job is not None:
            self.trials[job[0]].pending = job[1]
        return job

    def _scores(self, k: int, trials: list[int]) -> dict[int, float]:
        """How good each of ``trials`` (all finished rung ``k``) looks: the GP's full-budget prediction, or
        its value at rung ``k``; failed ones are infinite."""
        ok = [t for t in trials if math.isfinite(self.trials[t].values[k])]
        score = None
        if self.options["promote_by"] == "gp" and ok:
            score = self.proposer.rank(self.observed(), self.pending(), {t: self.trials[t].setting for t in ok})
        if score is None:
            score = {t: self.trials[t].values[k] for t in ok}
        return {t: score.get(t, math.inf) for t in trials}

    def _ranked(self, k: int, start: int = 0) -> tuple[list[int], int]:
        """Trials of the bracket that starts at rung ``start`` that finished rung ``k`` with a value, best first
        (ties by trial number), and how many finished it."""
        at = [t for t in sorted(self.trials) if k in self.trials[t].values and self.trials[t].start == start]
        score = self._scores(k, at)
        return sorted((t for t in at if math.isfinite(score[t])), key=lambda t: (score[t], t)), len(at)

    def _asha(self):
        for k in reversed(range(len(self.rungs) - 1)):
            for start in range(min(k, self.options["brackets"] - 1) + 1):
                ranked, n = self._ranked(k, start)
                for t in ranked[: n // self.eta]:
                    trial = self.trials[t]
                    if trial.pending is None and k + 1 not in trial.values and max(trial.values) == k:
                        return t, k + 1
        return self._new()

    def _bracket(self):
        top = len(self.rungs) - 1
        if not self.queue and not any(self.trials[t].pending is not None for t in self.alive):
            if self.alive and self.rung < top:  # the rung is complete: promote its best
                values = self._scores(self.rung, self.alive)
                self.alive, self.rung = promoted(values, self.eta), self.rung + 1
                self.queue = [(t, self.rung) for t in self.alive]
            else:  # the bracket is done: the next one
                size, start = bracket_shape(self.fidelity, len(self.rungs), self.eta, self.brackets)
                self.brackets += 1
                self.alive, self.rung = [], start
                for _ in range(size):
                    job = self._new()
                    if job is None:
                        break
                    self.alive.append(job[0])
                    self.trials[job[0]].pending = self.trials[job[0]].start = start  # seen as pending by later points
                self.queue = [(t, start) for t in self.alive]
        if not self.queue:
            return None
        return self.queue.pop(0)

    def finish(self, trial: int, rung: int, value: float, state) -> None:
        t = self.trials[trial]
        t.values[rung], t.state, t.pending = value, state, None


# --- the search ----------------------------------------------------------------------------------------------


def minimize(
    objective,
    space: dict,
    max_budget: int = 8100,
    min_budget: int = 900,
    eta: int = 3,
    compute: float | None = None,
    n_trials: int | None = None,
    method: str = "gp",
    fidelity: str = "asha",
    workers: int = 1,
    seed: int = 0,
    active: dict | None = None,
    cost=None,
    max_cost: float | None = None,
    x0: list[dict] | None = None,
    budget_unit: str = "iterations",
    **options,
) -> SearchResult:
    """Minimise ``objective(setting, budget, state) -> (value, state)`` over ``space`` in rungs of budget.

    Args:
        objective: trains ``setting`` up to ``budget`` (cumulative) and returns ``(value, state)``, or a future
            of that pair (anything with ``.result()``; see "Real parallelism" in the module's description);
            ``state`` is handed back at the trial's next rung (None at its first). A NaN or infinite value is
            a failure.
        space: ``{name: {"type": "real"|"integer", "low", "high", "prior": "uniform"|"log-uniform"}}`` or
            ``{name: {"type": "categorical", "values": [...]}}`` (the form of params.yaml's ``search.space``).
        max_budget, min_budget, eta: the rungs, ``min_budget * eta**k`` below ``max_budget``, then
            ``max_budget`` (a rung within ``sqrt(eta)`` of it is merged into it).
        compute: trial-iterations to spend (cost-weighted with ``cost``); or ``n_trials``: trials to start.
        method: ``gp`` (the joint GP), ``tpe`` (Optuna's TPESampler) or ``random``.
        fidelity: ``asha``, ``hyperband``, ``successive_halving`` or ``none``.
        workers: jobs in flight at once, in virtual time (see the module's description).
        seed: every random choice derives from it.
        active: ``{dimension: algorithms that read it}``; other algorithms' points get its lowest value.
        cost: ``setting -> relative cost per iteration`` (1 for all by default).
        max_cost: settings with a higher ``cost`` are never proposed.
        x0: settings to start with, in order (trials 0, 1, ...; e.g. the untuned setting), before the design.
        budget_unit: ``iterations`` (a job's compute is the budget it adds times the setting's ``cost``) or
            ``compute`` (budgets are already compute, e.g. iterations of a reference setting, and the objective
            trains a setting ``budget / cost`` iterations: a job's compute is the budget it adds, and ``cost``
            serves ``max_cost`` only).
        options: the GP method's switches, for ablations (``GP_OPTIONS``; ``brackets`` is the schedule's and
            applies to every method).

    Returns:
        A :class:`SearchResult`.

    Example::

        def f(setting, budget, state):
            return (setting["x"] - 0.3) ** 2 + 1 / budget, None

        result = minimize(f, {"x": {"type": "real", "low": 0, "high": 1, "prior": "uniform"}},
                          max_budget=81, min_budget=9, n_trials=30)
    """
    opts = _check(objective, space, max_budget, min_budget, eta, compute, n_trials, method, fidelity, workers,
                  active, cost, max_cost, budget_unit, options)  # fmt: skip
    rungs = [max_budget] if fidelity == "none" else rung_iterations(max_budget, min_budget, eta)
    unit = UnitSpace(space, active)
    price = (lambda s: 1.0) if cost is None else (lambda s: float(cost(s)))

    def allowed(setting: dict) -> bool:
        return max_cost is None or price(setting) <= max_cost

    starts = _starting_settings(x0, unit, allowed, n_trials)
    proposer = Proposer(unit, rungs, opts, seed, method, allowed, starts)
    scheduler = Scheduler(rungs, eta, fidelity, proposer, unit, n_trials, opts)
    job_price = price if budget_unit == "iterations" else (lambda s: 1.0)
    # The GP's matrices are small: one BLAS thread is faster than many contending ones, and as exact.
    with threadpool_limits(1):
        history = _run(objective, rungs, workers, compute, scheduler, job_price)
    return SearchResult(_best(scheduler, rungs), history, rungs)


def _starting_settings(x0, unit: UnitSpace, allowed, n_trials: int | None) -> list[dict]:
    """``x0`` pinned and in the space's types, or a ValueError naming ``x0`` for a setting outside the space,
    repeated once pinned, above max_cost, or more settings than ``n_trials``."""
    if x0 is None:
        return []
    if not isinstance(x0, (list, tuple)):
        raise ValueError(f"x0: expected a list of settings, got {type(x0).__name__}")
    if n_trials is not None and len(x0) > n_trials:
        raise ValueError(f"x0: {len(x0)} settings, more than n_trials ({n_trials})")
    out, seen = [], set()
    for i, setting in enumerate(x0):
        if not isinstance(setting, dict) or set(setting) != set(unit.names):
            raise ValueError(f"x0[{i}]: expected a mapping with exactly the dimensions {', '.join(unit.names)}")
        typed = {}
        for j in unit.categorical:  # first: the algorithm decides which numbers are pinned
            name, values = unit.names[j], unit.dims[j]["values"]
            same = [x for x in values if type(x) is type(setting[name]) and x == setting[name]]
            if not same:
                raise ValueError(f"x0[{i}].{name}: {setting[name]!r} is not one of {values}")
            typed[name] = same[0]
        pinned = unit.pin({**setting, **typed})
        for j in unit.continuous:
            name, d = unit.names[j], unit.dims[j]
            v = pinned[name]
            number = isinstance(v, numbers.Real) and not isinstance(v, bool) and d["low"] <= v <= d["high"]
            if not number or (d["type"] == "integer" and v != int(v)):
                raise ValueError(f"x0[{i}].{name}: {v!r} is outside the space")
            pinned[name] = int(v) if d["type"] == "integer" else float(v)
        if unit.key(pinned) in seen:
            raise ValueError(f"x0[{i}]: repeats an earlier setting of x0")
        if not allowed(pinned):
            raise ValueError(f"x0[{i}]: costs more than max_cost")
        seen.add(unit.key(pinned))
        out.append(pinned)
    return out


def _run(objective, rungs, workers, compute, scheduler, price) -> list[dict]:
    """The event loop in virtual time: start jobs while workers are free, reveal them in the order they end."""
    history, running, committed, spent, clock, order = [], [], 0.0, 0.0, 0.0, 0
    while True:
        while len(running) < workers and (compute is None or committed < compute):
            job = scheduler.next_job()
            if job is None:
                break
            trial, k = job
            t = scheduler.trials[trial]
            length = (rungs[k] - (rungs[max(t.values)] if t.values else 0)) * price(t.setting)
            outcome = objective(dict(t.setting), rungs[k], t.state)
            committed += length
            heapq.heappush(running, (clock + length, order, trial, k, outcome, length))
            order += 1
        if not running:
            break
        # The job that ends first in virtual time; a future is waited for here, whichever really ends first.
        clock, _, trial, k, outcome, length = heapq.heappop(running)
        value, state = _outcome(outcome)
        spent += length
        scheduler.finish(trial, k, value, state)
        history.append(
            {
                "trial": trial,
                "setting": dict(scheduler.trials[trial].setting),
                "budget": rungs[k],
                "value": value,
                "status": OK if math.isfinite(value) else FAILED,
                "compute_used": spent,
            }
        )
    return history


def _outcome(out):
    """``(value, state)`` of what the objective returned: the pair, or a future of it (resolved here)."""
    if not isinstance(out, tuple) and callable(getattr(out, "result", None)):
        out = out.result()
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"objective: expected a (value, state) pair or a future of one, got {type(out).__name__}")
    value = float(out[0])
    return (value if math.isfinite(value) else math.nan), out[1]


def _best(scheduler: Scheduler, rungs: list[int]) -> dict:
    """The lowest value at the highest budget any trial reached with a finite value."""
    rows = [(k, v, t) for t, trial in scheduler.trials.items() for k, v in trial.values.items() if math.isfinite(v)]
    if not rows:
        return {"trial": None, "setting": None, "value": math.nan, "budget": None}
    top = max(k for k, _, _ in rows)
    value, trial = min((v, t) for k, v, t in rows if k == top)
    return {"trial": trial, "setting": dict(scheduler.trials[trial].setting), "value": value, "budget": rungs[top]}


def _check(objective, space, max_budget, min_budget, eta, compute, n_trials, method, fidelity, workers, active,
           cost, max_cost, budget_unit, options) -> dict:  # fmt: skip
    """The GP options with defaults; a ValueError naming the argument for anything unusable."""

    def bad(message: str):
        raise ValueError(message)

    if not callable(objective):
        bad("objective: expected a callable objective(setting, budget, state) -> (value, state)")
    if not isinstance(space, dict) or not space:
        bad("space: expected a non-empty mapping of name to dimension")
    for name, d in space.items():
        kind = d.get("type") if isinstance(d, dict) else None
        if kind == "categorical":
            if not isinstance(d.get("values"), (list, tuple)) or not d["values"]:
                bad(f"space.{name}.values: expected a non-empty list")
        elif kind in ("real", "integer"):
            low, high = d.get("low"), d.get("high")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low > high:
                bad(f"space.{name}: expected numbers low <= high, got low={low!r}, high={high!r}")
            if d.get("prior", "uniform") not in ("uniform", "log-uniform"):
                bad(f"space.{name}.prior: expected uniform or log-uniform, got {d.get('prior')!r}")
            if d.get("prior") == "log-uniform" and low <= 0:
                bad(f"space.{name}.low: a log-uniform dimension needs low > 0, got {low}")
        else:
            bad(f"space.{name}.type: expected real, integer or categorical, got {kind!r}")
    for key, v, low in (("max_budget", max_budget, 1), ("min_budget", min_budget, None), ("eta", eta, None),
                        ("workers", workers, 1)):  # fmt: skip
        _require_bound(key, v, low, integer=True)
    if fidelity not in FIDELITIES:
        bad(f"fidelity: expected one of {', '.join(FIDELITIES)}, got {fidelity!r}")
    if budget_unit not in BUDGET_UNITS:
        bad(f"budget_unit: expected one of {', '.join(BUDGET_UNITS)}, got {budget_unit!r}")
    if method not in METHODS:
        bad(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if method == "tpe" and importlib.util.find_spec("optuna") is None:
        bad("method: tpe needs optuna (pip install -c constraints.txt 'metahpo[bench]')")
    if fidelity != "none":
        problems = plan_problems(max_budget, min_budget, eta, ("max_budget", "min_budget", "eta"))
        if problems:
            bad(problems[0])
    if (compute is None) == (n_trials is None):
        bad("compute: give exactly one of compute (trial-iterations to spend) and n_trials")
    if compute is not None:
        _require_bound("compute", compute, 0, strict=True)
    if n_trials is not None:
        _require_bound("n_trials", n_trials, 1, integer=True)
    if active is not None:
        if "algorithm" not in space or space["algorithm"].get("type") != "categorical":
            bad("active: needs a categorical 'algorithm' dimension in space")
        unknown = [n for n in active if n not in space]
        if unknown:
            bad(f"active: {unknown[0]!r} is not a dimension of space")
    if cost is not None and not callable(cost):
        bad("cost: expected a callable setting -> relative cost per iteration")
    if max_cost is not None:
        _require_bound("max_cost", max_cost, 0, strict=True)
    unknown = [k for k in options if k not in GP_OPTIONS]
    if unknown:
        bad(f"{unknown[0]}: unknown option (expected one of {', '.join(GP_OPTIONS)})")
    opts = {**GP_OPTIONS, **options}
    for key, choices in CHOICES.items():
        if opts[key] not in choices:
            bad(f"{key}: expected one of {', '.join(choices)}, got {opts[key]!r}")
    if opts["n_initial"] is not None:
        _require_bound("n_initial", opts["n_initial"], 1, integer=True)
    for key, low, integer in (("candidates", 1, True), ("xi", 0, False), ("random_every", 0, True),
                              ("brackets", 1, True)):  # fmt: skip
        _require_bound(key, opts[key], low, integer=integer)
    if opts["brackets"] != 1 and fidelity != "asha":
        bad(f"brackets: asynchronous Hyperband needs fidelity asha, got fidelity {fidelity!r}")
    n_rungs = len(rung_iterations(max_budget, min_budget, eta)) if fidelity == "asha" else 1
    if opts["brackets"] > n_rungs:
        bad(f"brackets: {opts['brackets']} is more than the {n_rungs} rungs of max_budget, min_budget and eta")
    return opts


def _require_bound(key: str, value, low, integer: bool = False, strict: bool = False) -> None:
    """A ValueError naming ``key`` unless ``value`` is a number (an integer when ``integer``; never a bool or NaN)
    at least ``low`` (above it when ``strict``; ``low`` None: no bound)."""
    kind = "an integer" if integer else "a number"
    bound = "" if low is None else f" {'>' if strict else '>='} {low}"
    number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not number or value != value or (low is not None and not (value > low if strict else value >= low)):
        raise ValueError(f"{key}: expected {kind}{bound}, got {value!r}")
