"""metahpo's search against Optuna, SMAC3 and DEHB on a tabular benchmark (benchmarks/tabular).

Usage: ``python benchmarks/search_peers.py [--table benchmarks/tabular/sinusoid] [--seeds 50] [--budget 10]
[--methods ...] [--dehb-python /work/venvs/dehb/bin/python] [--report-only]``. Needs the ``bench`` extra
(Optuna 5.0, SMAC3 2.4.1) and, for DEHB, its own venv (see benchmarks/tabular/dehb_runner.py).

Every method searches the table's space; a proposed point is evaluated as the table's nearest setting
(categories first, then the numbers), with one training seed drawn per trial from a generator seeded by the run's
seed (the same stream for every method). A trial continued to a higher rung keeps its training seed and pays only
the extra iterations (metahpo and Optuna continue trainings); SMAC3 and DEHB train every evaluation from scratch,
as they would on real trainings. Compute is counted in trial-iterations, and every method with rungs gets the same
ones (``search.min_iterations * eta**k`` up to ``search.iterations`` of the table's params: 900, 2700, 8100 at
eta 3). Each run stops asking once its compute reaches ``--budget`` full trials.

Scoring, the same for every method: the incumbent at a given compute is the setting of the lowest value observed
at full length so far; its regret is its expected full-length meta_val (the mean over the table's seeds) minus the
table's best. Before a method's first full-length result its regret is the table's largest. The chosen setting's
meta_test score is the mean over seeds of the incumbent's meta_test at the end (never seen by any method).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent / "tabular"))
from table import Table, config_space, load_table  # noqa: E402 - the table module lives beside the builder

HERE = Path(__file__).resolve().parent
METHODS = {
    "metahpo default": "metahpo's new default search (metahpo.search.minimize)",
    "metahpo gp + hyperband": "metahpo's GP + Hyperband: the real Search, the table as its trial function",
    "random + hyperband": "metahpo's Search with random proposals and Hyperband",
    "optuna tpe + hyperband": "Optuna TPESampler with its HyperbandPruner (reported at the rungs)",
    "optuna tpe": "Optuna TPESampler, full-length trials",
    "optuna gp": "Optuna GPSampler, full-length trials",
    "smac3 mf": "SMAC3 MultiFidelityFacade (random forest, Hyperband intensifier)",
    "dehb": "DEHB 0.1.2 (subprocess in its own venv)",
}
# The new default with one choice changed (GP_OPTIONS of metahpo.search.multifidelity, or minimize's keywords):
# the ablation of each choice, on the same table and seeds.
VARIANTS = {
    "metahpo default, transform none": {"transform": "none"},
    "metahpo default, promote by rung": {"promote_by": "rung"},
    "metahpo default, random initial": {"initial": "random"},
    "metahpo default, hyperband": {"fidelity": "hyperband"},
    "metahpo default, random every 3": {"random_every": 3},
    "metahpo default, xi 0.01": {"xi": 0.01},
    "metahpo default, xi 0.3": {"xi": 0.3},
    "metahpo default, 5 initial": {"n_initial": 5},
    "metahpo default, 20 initial": {"n_initial": 20},
    "metahpo default, 1024 candidates": {"candidates": 1024},
    "metahpo default, async hyperband 2": {"brackets": 2},
    "metahpo default, async hyperband 3": {"brackets": 3},
    "metahpo tpe + asha": {"method": "tpe"},
    "metahpo random + asha": {"method": "random"},
}
METHODS.update({name: f"metahpo.search.minimize with {change}" for name, change in VARIANTS.items()})
DEFAULT_METHODS = [m for m in METHODS if m not in VARIANTS]


class Run:
    """One search run against the table: draws training seeds, counts compute, records every evaluation."""

    def __init__(self, table: Table, seed: int, budget: int, draw_seed: int):
        self.table, self.budget = table, budget
        self.rng = np.random.default_rng([draw_seed, seed])
        self.compute, self.events, self.seen = 0, [], set()

    def start(self, point: dict, budget: int | None = None) -> tuple[int, int, bool]:
        """A new trial at ``point``: its setting, its training seed, and whether the point is new to this run.

        ``budget``: for methods that train every evaluation from scratch, a point is a repeat only at the same
        budget (an evaluation at a higher budget is their promotion, not a duplicate).
        """
        key = json.dumps([point, budget], sort_keys=True)
        new = key not in self.seen
        self.seen.add(key)
        return self.table.nearest(point), int(self.rng.integers(self.table.values.shape[1])), new

    def evaluate(self, trial, setting: int, seed: int, start: int, stop: int, new_point: bool = True) -> float | None:
        """The objective of ``setting`` trained with ``seed`` to ``stop`` (None: failed); pays ``stop - start``."""
        value = self.table.value(setting, seed, stop)
        self.compute += stop - start
        self.events.append(
            {"trial": trial, "setting": setting, "start": start, "stop": stop, "seed": seed, "value": value,
             "new_point": bool(new_point)}
        )  # fmt: skip
        return value

    @property
    def spent(self) -> bool:
        return self.compute >= self.budget


def rungs_of(table: Table) -> list[int]:
    """The rungs every multi-fidelity method gets (metahpo's own rung arithmetic)."""
    from metahpo.search.rungs import rung_iterations

    return rung_iterations(table.iterations, table.min_iterations, table.eta)


# --- metahpo -------------------------------------------------------------------------------------------------


def search_params(table: Table, seed: int, method: str, n_calls: int):
    """The table's params as a sequential (one worker) multi-fidelity search with ``method``."""
    from metahpo.params import Params

    raw = copy.deepcopy(table.params)
    raw["seed"] = seed
    raw["search"].update(
        method=method, fidelity="hyperband", n_calls=n_calls, workers=1, executor="local", address=None,
        start_from_default=False, repeats=1, max_cost=None,
    )  # fmt: skip
    raw["search"]["median_stop"] = {"enabled": False, "checkpoints": 4, "min_trials": 5}
    raw["search"]["n_initial_points"] = min(raw["search"]["n_initial_points"], n_calls)
    return Params.from_dict(raw)


def whole_brackets_reaching(table: Table, budget: int) -> int:
    """The fewest trials whose whole Hyperband brackets plan at least ``budget`` trial-iterations."""
    from metahpo.search import rungs as fidelity

    rungs, n = rungs_of(table), 1
    while True:
        plan = fidelity.brackets("hyperband", len(rungs), table.eta, n)
        n = sum(b.size for b in plan)
        if fidelity.planned_iterations(plan, rungs, table.eta) >= budget:
            return n
        n += 1


def run_metahpo_search(table: Table, seed: int, budget: int, draw_seed: int, penalty: float, method: str) -> Run:
    """metahpo's real :class:`Search` (GP or random proposals, Hyperband) with the table as its trial function."""
    from metahpo.search.driver import Search
    from metahpo.search.trial import TrialResult

    run = Run(table, seed, budget, draw_seed)
    params = search_params(table, seed, method, whole_brackets_reaching(table, budget))

    def trial_fn(request) -> TrialResult:
        stop = request.stop_at or table.iterations
        state = (request.resume or {}).get(0)
        if state is None:
            setting, k, new = run.start(request.point)
            start = 0
        else:
            setting, k, new, start = state["setting"], state["seed"], False, state["step"]
        value = run.evaluate(request.trial, setting, k, start, stop, new)
        if value is None:
            return TrialResult(request.trial, "failed", error="DivergenceError: the table's training failed")
        states = {0: {"step": stop, "setting": setting, "seed": k}} if stop < table.iterations else {}
        return TrialResult(request.trial, "ok", value, [value], states=states)

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.json"
        manifest.write_text(json.dumps({"table": str(TABLE_PREFIX)}))
        data = {"meta_train": {}, "meta_val": {}}
        search = Search(params, data, penalty, Path(tmp) / "search", manifest, trial_fn=trial_fn)
        with contextlib.redirect_stderr(io.StringIO()):
            search.run()
    return run


def run_metahpo_default(table: Table, seed: int, budget: int, draw_seed: int, change: dict | None = None) -> Run:
    """metahpo's new default search through its library call, ``metahpo.search.minimize`` (one worker).

    ``change``: keywords of ``minimize`` that differ from the default (an ablation's variant).
    """
    try:
        from metahpo.search import minimize
    except ImportError:
        raise SystemExit(
            "--methods 'metahpo default': metahpo.search.minimize is not importable from this tree "
            "(run that method with PYTHONPATH pointing at a tree that has it, then --merge its output)"
        ) from None
    from metahpo.learners import USED_ONLY_BY

    run = Run(table, seed, budget, draw_seed)
    active = {name: list(algorithms) for name, algorithms in USED_ONLY_BY.items() if name in table.space}

    def objective(setting: dict, stop: int, state):
        if state is None:
            (setting_index, k, new), trial, start = run.start(setting), len({e["trial"] for e in run.events}), 0
        else:
            setting_index, k, trial, start, new = *state, False
        value = run.evaluate(trial, setting_index, k, start, stop, new)
        return (math.nan if value is None else value), (setting_index, k, trial, stop)

    minimize(
        objective, table.space, max_budget=table.iterations, min_budget=table.min_iterations, eta=table.eta,
        compute=budget, seed=seed, active=active, **(change or {}),
    )  # fmt: skip
    return run


# --- Optuna ----------------------------------------------------------------------------------------------------


def suggest(trial, space: dict) -> dict:
    """A point of ``space`` from an Optuna trial."""
    point = {}
    for name, dim in space.items():
        if dim["type"] == "categorical":
            point[name] = trial.suggest_categorical(name, list(dim["values"]))
        elif dim["type"] == "integer":
            point[name] = trial.suggest_int(name, int(dim["low"]), int(dim["high"]))
        else:
            log = dim.get("prior") == "log-uniform"
            point[name] = trial.suggest_float(name, float(dim["low"]), float(dim["high"]), log=log)
    return point


def run_optuna(table: Table, seed: int, budget: int, draw_seed: int, sampler: str, pruned: bool) -> Run:
    """Optuna (TPE or GP) by ask/tell; with ``pruned``, its HyperbandPruner on reports at the rungs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    run, rungs = Run(table, seed, budget, draw_seed), rungs_of(table)
    sampler_obj = optuna.samplers.TPESampler(seed=seed) if sampler == "tpe" else optuna.samplers.GPSampler(seed=seed)
    pruner = (
        optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=rungs[-1], reduction_factor=table.eta)
        if pruned
        else optuna.pruners.NopPruner()
    )
    # HyperbandPruner assigns brackets by a hash of the study's name, random unless named.
    study = optuna.create_study(study_name=f"search-peers-{seed}", sampler=sampler_obj, pruner=pruner)
    while not run.spent:
        trial = study.ask()
        setting, k, new = run.start(suggest(trial, table.space))
        previous, state, value = 0, optuna.trial.TrialState.COMPLETE, None
        for stop in rungs if pruned else [table.iterations]:
            value = run.evaluate(trial.number, setting, k, previous, stop, new and previous == 0)
            previous = stop
            if value is None:
                state = optuna.trial.TrialState.FAIL
                break
            if stop < table.iterations:
                trial.report(value, stop)
                if trial.should_prune():
                    state = optuna.trial.TrialState.PRUNED
                    break
        study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    return run


# --- SMAC3 -----------------------------------------------------------------------------------------------------


def run_smac(table: Table, seed: int, budget: int, draw_seed: int, penalty: float) -> Run:
    """SMAC3's MultiFidelityFacade by ask/tell, with its Hyperband intensifier on the common rungs."""
    from smac import MultiFidelityFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue
    from smac.runhistory.enumerations import StatusType

    run, rungs = Run(table, seed, budget, draw_seed), rungs_of(table)
    cs = config_space(table.space, seed)
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Scenario(
            cs, output_directory=Path(tmp) / "smac", n_trials=100_000, min_budget=rungs[0], max_budget=rungs[-1],
            seed=seed, crash_cost=penalty,
        )  # fmt: skip
        intensifier = MultiFidelityFacade.get_intensifier(scenario, eta=table.eta)
        smac = MultiFidelityFacade(
            scenario, target_function=lambda config, seed, budget: 0.0, intensifier=intensifier, overwrite=True,
            logging_level=40,
        )  # fmt: skip
        trial = 0
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            while not run.spent:
                info = smac.ask()
                stop = int(round(info.budget))
                setting, k, new = run.start(dict(info.config), stop)
                value = run.evaluate(trial, setting, k, 0, stop, new)
                trial += 1
                if value is None:
                    smac.tell(info, TrialValue(cost=penalty, status=StatusType.CRASHED))
                else:
                    smac.tell(info, TrialValue(cost=value))
    return run


# --- DEHB ------------------------------------------------------------------------------------------------------


def run_dehb(table: Table, seeds: list[int], budget: int, draw_seed: int, penalty: float, python: str) -> list[Run]:
    """DEHB in its own venv: the table goes over as NPZ, the rules as JSON, the evaluations come back as JSON."""
    if not Path(python).exists():
        raise SystemExit(f"--dehb-python: {python} not found (see benchmarks/tabular/dehb_runner.py)")
    with tempfile.TemporaryDirectory() as tmp:
        npz, spec, out = Path(tmp) / "table.npz", Path(tmp) / "spec.json", Path(tmp) / "out.json"
        np.savez(npz, values=table.values, codes=table.codes, categorical=table.categorical)
        spec.write_text(
            json.dumps(
                {
                    "space": table.space,
                    "rungs": rungs_of(table),
                    "every": table.every,
                    "eta": table.eta,
                    "budget": budget,
                    "seeds": seeds,
                    "draw_seed": draw_seed,
                    "penalty": penalty,
                }
            )  # fmt: skip
        )
        done = subprocess.run(
            [python, str(HERE / "tabular" / "dehb_runner.py"), str(npz), str(spec), str(out)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"dehb_runner.py failed: {done.stderr.strip().splitlines()[-1:]}")
        results = json.loads(out.read_text())
    runs = []
    for seed in seeds:
        run = Run(table, seed, budget, draw_seed)
        run.events = results[str(seed)]
        run.compute = sum(e["stop"] - e["start"] for e in run.events)
        runs.append(run)
    return runs


# --- running ---------------------------------------------------------------------------------------------------

TABLE_PREFIX = HERE / "tabular" / "sinusoid"


def one_run(job: tuple) -> tuple[str, int, list[dict], float]:
    """Run ``method`` with ``seed``; its evaluations and seconds (a process-pool job)."""
    prefix, max_settings, method, seed, budget, draw_seed, penalty = job
    global TABLE_PREFIX
    TABLE_PREFIX = prefix
    table = load_table(prefix, max_settings)
    start = time.perf_counter()
    # The surrogates' matrices are small: one BLAS thread is faster than several contending for two cores.
    with threadpool_limits(1):
        run = _dispatch(table, method, seed, budget, draw_seed, penalty)
    return method, seed, run.events, time.perf_counter() - start


def _dispatch(table: Table, method: str, seed: int, budget: int, draw_seed: int, penalty: float) -> Run:
    if method == "metahpo gp + hyperband":
        run = run_metahpo_search(table, seed, budget, draw_seed, penalty, "gp")
    elif method == "random + hyperband":
        run = run_metahpo_search(table, seed, budget, draw_seed, penalty, "random")
    elif method == "metahpo default":
        run = run_metahpo_default(table, seed, budget, draw_seed)
    elif method in VARIANTS:
        run = run_metahpo_default(table, seed, budget, draw_seed, VARIANTS[method])
    elif method == "optuna tpe + hyperband":
        run = run_optuna(table, seed, budget, draw_seed, "tpe", pruned=True)
    elif method == "optuna tpe":
        run = run_optuna(table, seed, budget, draw_seed, "tpe", pruned=False)
    elif method == "optuna gp":
        run = run_optuna(table, seed, budget, draw_seed, "gp", pruned=False)
    elif method == "smac3 mf":
        run = run_smac(table, seed, budget, draw_seed, penalty)
    else:
        raise ValueError(method)
    return run


def penalty_of(table: Table) -> float:
    """The penalty a failed training is told and counted as: the zero predictor's meta_val MSE (or chance)."""
    from metahpo.learners.family import family_of
    from metahpo.params import Params
    from metahpo.tasks.generate import classification_splits, regression_splits

    params = Params.from_dict(table.params)
    make = classification_splits if params.tasks.classification else regression_splits
    splits, _, _ = make(params.tasks, params.seed)
    return float(family_of(params).penalty_floor(splits["meta_val"]))


# --- scoring ---------------------------------------------------------------------------------------------------


def trace(events: list[dict], table: Table, true: np.ndarray, iterations: int, grid: np.ndarray) -> dict:
    """Regret and chosen setting of one run at each compute of ``grid``; its duplicates and rung shares."""
    worst = float(true.max() - true.min())
    compute, best_value, incumbent = 0, math.inf, None
    points = []  # (compute after the event, incumbent)
    for e in events:
        compute += e["stop"] - e["start"]
        if e["stop"] == iterations and e["value"] is not None and e["value"] < best_value:
            best_value, incumbent = e["value"], e["setting"]
        points.append((compute, incumbent))
    regret = np.full(len(grid), worst)
    chosen = [None] * len(grid)
    j = 0
    current = None
    for g_index, g in enumerate(grid):
        while j < len(points) and points[j][0] <= g:
            current = points[j][1]
            j += 1
        chosen[g_index] = current
        if current is not None:
            regret[g_index] = true[current] - true.min()
    starts = [e for e in events if e["start"] == 0]  # new trials (and every evaluation of SMAC3 and DEHB)
    settings = [(e["setting"], e["stop"]) for e in starts]
    shares: dict[str, int] = {}
    for e in events:
        shares[str(e["stop"])] = shares.get(str(e["stop"]), 0) + e["stop"] - e["start"]
    total = max(1, sum(shares.values()))
    return {
        "regret": regret,
        "chosen": chosen,
        "trials": len(starts),
        "duplicate_points": sum(1 for e in starts if not e["new_point"]) / max(1, len(starts)),
        "duplicate_settings": 1 - len(set(settings)) / max(1, len(settings)),
        "rung_share": {k: v / total for k, v in sorted(shares.items(), key=lambda kv: int(kv[0]))},
        "first_full": next((c for c, inc in points if inc is not None), None),
    }


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean: the mean of the middle half (25% trimmed each side)."""
    from scipy.stats import trim_mean

    return trim_mean(values, 0.25, axis=axis)


def bootstrap(values: np.ndarray, statistic, draws: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap interval of ``statistic`` over the rows (seeds) of ``values``."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(values), size=(draws, len(values)))
    stats = np.array([statistic(values[i], axis=0) for i in index])
    return np.percentile(stats, 2.5, axis=0), np.percentile(stats, 97.5, axis=0)


def to_reach(regret: np.ndarray, grid: np.ndarray, target: float) -> float:
    """The first compute of ``grid`` where ``regret`` is at most ``target``; inf if never."""
    hit = np.nonzero(regret <= target + 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else math.inf


def analyse(runs: dict, table: Table, penalty: float, budget_trials: int, reference: str) -> dict:
    """Every statistic of the report, from the runs' evaluations."""
    from scipy.stats import wilcoxon

    true = table.true_values(penalty)
    test = np.nanmean(table.meta_test, axis=1)
    grid = np.arange(table.iterations // 9, budget_trials * table.iterations + 1, table.iterations // 9)
    order = np.sort(true)
    targets = {
        "top 10%": float(order[max(0, math.ceil(0.10 * len(order)) - 1)] - order[0]),
        "top 5%": float(order[max(0, math.ceil(0.05 * len(order)) - 1)] - order[0]),
        "best setting": 0.0,
    }
    out = {"grid": grid.tolist(), "targets": targets, "methods": {}}
    regrets = {}
    for method in [m for m in METHODS if m in runs]:  # the report's order, whatever the saved file's
        seeds = runs[method]
        traces = [trace(seeds[s], table, true, table.iterations, grid) for s in sorted(seeds, key=int)]
        r = np.array([t["regret"] for t in traces])
        regrets[method] = dict(zip(sorted(seeds, key=int), r))
        med_lo, med_hi = bootstrap(r, np.median)
        iqm_lo, iqm_hi = bootstrap(r, iqm)
        final_chosen = [t["chosen"][-1] for t in traces]
        reach = {}
        for name, target in targets.items():
            c = np.array([to_reach(x, grid, target) for x in r])
            reach[name] = {"median": float(np.median(c)), "reached": int(np.isfinite(c).sum()), "of": len(c)}
        shares = {}
        for t in traces:
            for k, v in t["rung_share"].items():
                shares.setdefault(k, []).append(v)
        out["methods"][method] = {
            "seeds": len(traces),
            "median_regret": np.median(r, axis=0).tolist(),
            "median_ci": [med_lo.tolist(), med_hi.tolist()],
            "iqm_regret": iqm(r).tolist(),
            "iqm_ci": [iqm_lo.tolist(), iqm_hi.tolist()],
            "final_regret": r[:, -1].tolist(),
            "to_reach": reach,
            "trials_median": float(np.median([t["trials"] for t in traces])),
            "duplicate_points": float(np.mean([t["duplicate_points"] for t in traces])),
            "duplicate_settings": float(np.mean([t["duplicate_settings"] for t in traces])),
            "rung_share": {k: float(np.mean(v)) for k, v in shares.items()},
            "first_full_median": float(np.median([t["first_full"] or math.inf for t in traces])),
            "chosen_meta_test": [None if c is None else float(test[c]) for c in final_chosen],
        }
    if reference in regrets:
        ref = regrets[reference]
        half = len(grid) // 2 - 1
        for method, by_seed in regrets.items():
            common = [seed for seed in by_seed if seed in ref]  # paired on the seeds both ran
            if method == reference or len(common) < 2:
                continue
            r, r_ref = np.array([by_seed[x] for x in common]), np.array([ref[x] for x in common])
            paired = {}
            for label, index in (("half budget", half), ("full budget", len(grid) - 1)):
                d = r[:, index] - r_ref[:, index]  # positive: the reference has lower regret
                p = float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
                paired[label] = {
                    "seeds": len(common),
                    "median_difference": float(np.median(d)), "reference_wins": int((d > 0).sum()),
                    "ties": int((d == 0).sum()), "reference_losses": int((d < 0).sum()), "wilcoxon_p": p,
                }  # fmt: skip
            out["methods"][method]["paired_vs_reference"] = paired
    out["reference"] = reference
    return out


def fmt(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x / 1000:,.1f}k"


def report(result: dict, table: Table, args, penalty: float, seconds: dict) -> str:
    """The text report."""
    true = table.true_values(penalty)
    grid = result["grid"]
    seeds = sorted({int(s) for runs in result["runs"].values() for s in runs})
    lines = [
        f"Tabular benchmark: {table.family}, {len(table.points)} of {table.settings_designed} designed settings "
        f"complete ({table.values.shape[1]} seeds each, {table.rows} rows in the table), "
        f"full trial {table.iterations:,} iterations, rungs {', '.join(map(str, rungs_of(table)))}.",
        f"Best setting's expected meta_val {true.min():.4f}, median setting {np.median(true):.4f}, worst "
        f"{true.max():.4f} (a failed seed counts as the zero predictor's {penalty:.4f}). Budget {args.budget} full "
        f"trials = {args.budget * table.iterations:,} trial-iterations; "
        f"{'/'.join(sorted({str(m['seeds']) for m in result['methods'].values()}))} seeds per method "
        f"(seeds {seeds[0]} to {seeds[-1]}).",
        "Regret: the incumbent's expected full-length meta_val minus the table's best (lower is better).",
        "Targets (regret of the table's k-th best setting): "
        + ", ".join(f"{k} <= {v:.4f}" for k, v in result["targets"].items()),
        "",
        "| method | median regret at 1/2 budget [95% CI] | at full budget [95% CI] | IQM at full [95% CI] | "
        "first full-length result (median) | trials started (median) | duplicate points | duplicate settings | "
        "meta_test of the chosen setting (median) | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    half = len(grid) // 2 - 1
    notes = [
        "",
        "Trials started: SMAC3 and DEHB train every evaluation from scratch, so each of their evaluations counts. "
        "Duplicate points: trials started at a point tried before (SMAC3, DEHB: at the same budget); duplicate "
        "settings: the same for the table setting a point lands on.",
    ]
    for method, m in result["methods"].items():
        tests = [t for t in m["chosen_meta_test"] if t is not None]
        low, high = m["median_ci"]
        lines.append(
            f"| {method} | {m['median_regret'][half]:.4f} [{low[half]:.4f}, {high[half]:.4f}]"
            f" | {m['median_regret'][-1]:.4f} [{m['median_ci'][0][-1]:.4f}, {m['median_ci'][1][-1]:.4f}]"
            f" | {m['iqm_regret'][-1]:.4f} [{m['iqm_ci'][0][-1]:.4f}, {m['iqm_ci'][1][-1]:.4f}]"
            f" | {fmt(m['first_full_median'])} | {m['trials_median']:.0f} | {m['duplicate_points']:.1%}"
            f" | {m['duplicate_settings']:.1%} | {np.median(tests) if tests else float('nan'):.4f}"
            f" | {seconds.get(method, 0):.0f} |"
        )
    lines += notes
    lines += ["", "Compute (trial-iterations) to reach each target: median over seeds, a seed that never reaches it "
              "counting as never; reached/seeds.", "", "| method | " + " | ".join(result["targets"]) + " |",
              "|---|" + "---|" * len(result["targets"])]  # fmt: skip
    for method, m in result["methods"].items():
        cells = [f"{fmt(v['median'])} ({v['reached']}/{v['of']})" for v in m["to_reach"].values()]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Share of each method's compute spent at each rung (a continued trial's extra iterations count at "
              "the rung it continues to):", ""]  # fmt: skip
    for method, m in result["methods"].items():
        lines.append(f"- {method}: " + ", ".join(f"{k}: {v:.0%}" for k, v in m["rung_share"].items()))
    ref = result["reference"]
    lines += ["", f"Paired per-seed regret differences against {ref} (positive: {ref} lower), Wilcoxon signed-rank:",
              "", "| method | at | median difference | {ref} wins / ties / losses | Wilcoxon p |".replace("{ref}", ref),
              "|---|---|---|---|---|"]  # fmt: skip
    for method, m in result["methods"].items():
        for label, p in m.get("paired_vs_reference", {}).items():
            lines.append(
                f"| {method} | {label} | {p['median_difference']:+.4f} | {p['reference_wins']} / {p['ties']} / "
                f"{p['reference_losses']} | {p['wilcoxon_p']:.3g} |"
            )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path, title: str, objective: str = "meta_val grid MSE") -> None:
    """Median regret against compute, with bootstrap 95% bands; ``objective`` names what the searches minimise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.array(result["grid"]) / 1000
    fig, ax = plt.subplots(figsize=(8, 5))
    for method, m in result["methods"].items():
        (line,) = ax.plot(grid, m["median_regret"], label=method)
        ax.fill_between(grid, m["median_ci"][0], m["median_ci"][1], color=line.get_color(), alpha=0.15)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("compute (thousand trial-iterations)")
    ax.set_ylabel(f"median regret ({objective})")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Run (or re-score with ``--report-only``) every method on every seed; write .txt, .json and .png."""
    global TABLE_PREFIX
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, default=TABLE_PREFIX, help="table prefix (PREFIX.design.json, .jsonl)")
    parser.add_argument("--max-settings", type=int, default=None, help="use at most this many settings")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--budget", type=int, default=10, help="compute per run, in full trials")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    parser.add_argument(
        "--reference", default=None, choices=list(METHODS),
        help="the method paired differences are taken against (default: metahpo default if run, else metahpo gp + "
        "hyperband)",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--dehb-python", default="/work/venvs/dehb/bin/python")
    parser.add_argument("--out", type=Path, default=HERE / "search_peers")
    parser.add_argument("--report-only", action="store_true", help="re-score the runs saved in OUT.json")
    parser.add_argument(
        "--merge", type=Path, nargs="*", default=[],
        help="add the runs of these outputs (same table prefix, settings, seeds and budget), e.g. a method run "
        "from another source tree",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for key in ("seeds", "budget", "jobs"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1")
    TABLE_PREFIX = args.table
    table = load_table(args.table, args.max_settings)
    penalty = penalty_of(table)
    budget, draw_seed = args.budget * table.iterations, 20_000
    if args.report_only:
        saved = json.loads(Path(f"{args.out}.json").read_text())
        runs, seconds = saved["runs"], saved["seconds"]
    else:
        runs, seconds = {}, {}
        jobs = [
            (args.table, args.max_settings, m, s, budget, draw_seed, penalty)
            for m in args.methods if m != "dehb" for s in range(args.first_seed, args.first_seed + args.seeds)
        ]  # fmt: skip
        with ProcessPoolExecutor(args.jobs) as pool:
            for method, seed, events, took in pool.map(one_run, jobs):
                runs.setdefault(method, {})[str(seed)] = events
                seconds[method] = seconds.get(method, 0.0) + took
        if "dehb" in args.methods:
            start = time.perf_counter()
            seeds = list(range(args.first_seed, args.first_seed + args.seeds))
            dehb_runs = run_dehb(table, seeds, budget, draw_seed, penalty, args.dehb_python)
            runs["dehb"] = {str(s): r.events for s, r in zip(seeds, dehb_runs)}
            seconds["dehb"] = time.perf_counter() - start
    for path in args.merge:
        if not path.exists():
            raise SystemExit(f"--merge: {path} not found")
        saved = json.loads(path.read_text())
        for key, mine in (("settings", len(table.points)), ("budget", args.budget)):
            if saved.get(key) != mine:
                raise SystemExit(f"--merge: {path} has {key} {saved.get(key)}, this run {mine}")
        for method, seeds in saved["runs"].items():  # a merged seed replaces this run's
            fresh = method not in runs or set(seeds) >= set(runs[method])
            runs[method] = seeds if fresh else {**runs[method], **seeds}
            seconds[method] = saved["seconds"][method] if fresh else seconds[method] + saved["seconds"][method]
    reference = args.reference or ("metahpo default" if "metahpo default" in runs else "metahpo gp + hyperband")
    result = analyse(runs, table, penalty, args.budget, reference)
    seeds_run = max(m["seeds"] for m in result["methods"].values())
    result.update(
        table=str(args.table), settings=len(table.points), rows=table.rows, seeds=seeds_run, budget=args.budget,
        penalty=penalty, seconds=seconds, runs=runs,
    )  # fmt: skip
    text = report(result, table, args, penalty, seconds)
    from metahpo.atomic import write_json, write_text

    write_text(Path(f"{args.out}.txt"), text)
    write_json(Path(f"{args.out}.json"), result)
    from metahpo.learners.family import family_of
    from metahpo.params import Params

    objective = family_of(Params.from_dict(table.params)).objective_name()
    plot(result, Path(f"{args.out}.png"), f"{table.family}: {len(table.points)} settings, {seeds_run} seeds", objective)
    print(text, end="")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
