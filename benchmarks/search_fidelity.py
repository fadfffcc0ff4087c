"""Multi-fidelity search against plain GP search and Optuna, at equal meta-training compute.

Usage: ``python benchmarks/search_fidelity.py [--seeds 5] [--iterations 2700] [--min-iterations 300] [--eta 3]
[--trials 16] [--jobs 2] [--report-only]``. Needs Optuna: ``pip install -c constraints.txt -e '.[bench]'``.

The default sinusoid search space of params.yaml, scaled down so that 25 searches fit in about an hour on
two cores: a full trial is ``--iterations`` meta-iterations, and every method gets the budget of plain GP
search with ``--trials`` full trials (16 x 2,700 = 43,200 trial-iterations):

* ``gp``: metahpo's GP search, one full-length trial after another;
* ``gp + successive halving``, ``gp + hyperband``, ``random + hyperband``: metahpo's multi-fidelity search
  (rungs of ``min_iterations * eta**k`` iterations, promoted trials continue), whole brackets until the
  budget is reached;
* ``optuna tpe + hyperband``: Optuna's TPESampler with its HyperbandPruner (same rungs, same reduction
  factor) on the same trial function: metahpo's meta-training, reported and pruned at every rung.

Every search runs in one process with one thread (``--jobs`` searches at a time), on the same task data
(seed 0; 5,000 meta_train tasks, 100 meta_val tasks, 600 meta_test tasks), with ``--seeds`` search seeds.
Compute is counted in meta-training iterations, not seconds, so the load on the machine does not move it;
only what a method found within the budget counts (a last bracket or trial may run past it).
Printed: for each method the median (min-max over seeds) of the best full-length meta_val grid MSE after
1/3, 2/3 and all of the budget, the compute at which it first matched plain GP's final best (same seed),
and the meta_test grid MSE after one step of its chosen setting (trained for ``--iterations`` iterations
with its trial's seed). A figure of the best value against compute goes to ``search_fidelity.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from metahpo.learners.adaptation import validation_mse
from metahpo.learners.family import zero_predictor_mse
from metahpo.learners.metatrain import build_learner, meta_train
from metahpo.learners.settings import apply_point, learner_config, train_settings
from metahpo.params import Params, read_params_file
from metahpo.search import rungs as fidelity
from metahpo.search.driver import Search
from metahpo.search.trial import run_trial
from metahpo.seeds import trial_seed
from metahpo.tasks.sinusoid import TaskPool, generate_splits
from metahpo.tasks.storage import save_splits

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gp", "gp + successive halving", "gp + hyperband", "random + hyperband", "optuna tpe + hyperband")


def bench_params(args, seed: int, method: str) -> Params:
    """params.yaml with the benchmark's task sizes, search budget and ``method``."""
    raw = copy.deepcopy(read_params_file(ROOT / "params.yaml"))
    raw.update(seed=seed, device="cpu", threads=1)
    raw["tasks"]["splits"].update(meta_train=5000, meta_val=100, meta_test=600)
    raw["search"].update(
        iterations=args.iterations, min_iterations=args.min_iterations, eta=args.eta, workers=1,
        executor="local", address=None, method="random" if method.startswith("random") else "gp",
        fidelity="none" if method == "gp" else "successive_halving" if "halving" in method else "hyperband",
        start_from_default=False, repeats=1,
    )  # fmt: skip
    raw["search"]["median_stop"]["enabled"] = False
    budget = args.iterations * args.trials
    if method == "gp":
        raw["search"]["n_calls"] = args.trials
    elif not method.startswith("optuna"):
        raw["search"]["n_calls"] = whole_brackets_reaching(raw["search"], budget)
    raw["search"]["n_initial_points"] = min(raw["search"]["n_initial_points"], raw["search"]["n_calls"])
    return Params.from_dict(raw)


def whole_brackets_reaching(search: dict, budget: int) -> int:
    """The fewest trials whose whole brackets plan at least ``budget`` trial-iterations."""
    rungs = fidelity.rung_iterations(search["iterations"], search["min_iterations"], search["eta"])
    n = 1
    while True:
        plan = fidelity.brackets(search["fidelity"], len(rungs), search["eta"], n)
        n = sum(b.size for b in plan)
        if fidelity.planned_iterations(plan, rungs, search["eta"]) >= budget:
            return n
        n += 1


def data():
    """The benchmark's task data (seed 0), generated once per process."""
    params = bench_params(argparse.Namespace(iterations=10, min_iterations=1, eta=3, trials=1), 0, "gp")
    return generate_splits(params.tasks, 0)


def metahpo_search(params: Params, splits: dict) -> list[tuple]:
    """Run metahpo's search; return its (compute so far, full-length objective or NaN, point, seed) events."""
    events: list[tuple] = []
    used = [0]

    def traced(request):
        result = run_trial(request)
        start = next(iter((request.resume or {}).values()), {}).get("step", 0)
        stop = request.stop_at or params.search.iterations
        used[0] += stop - start
        full = stop == params.search.iterations and result.status == "ok"
        events.append((used[0], result.objective if full else math.nan, request.point, request.seed))
        return result

    with tempfile.TemporaryDirectory() as tmp:
        save_splits(Path(tmp) / "tasks", splits, params.tasks, 0)
        search = Search(
            params, {k: splits[k] for k in ("meta_train", "meta_val")}, zero_predictor_mse(splits["meta_val"]),
            Path(tmp) / "search", Path(tmp) / "tasks/manifest.json", traced,
        )  # fmt: skip
        search.run()
    return events


def optuna_search(params: Params, splits: dict, budget: int) -> list[tuple]:
    """Optuna's TPE with Hyperband pruning on metahpo's meta-training, until ``budget`` trial-iterations."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search, device = params.search, torch.device("cpu")
    rungs = fidelity.rung_iterations(search.iterations, search.min_iterations, search.eta)
    pool = TaskPool.from_split(splits["meta_train"], device)
    events: list[tuple] = []
    used = [0]

    def suggest(trial) -> dict:
        point = {}
        for name, dim in search.space.items():
            if dim["type"] == "categorical":
                point[name] = trial.suggest_categorical(name, dim["values"])
            elif dim["type"] == "integer":
                point[name] = trial.suggest_int(name, dim["low"], dim["high"], log=dim["prior"] == "log-uniform")
            else:
                point[name] = trial.suggest_float(name, dim["low"], dim["high"], log=dim["prior"] == "log-uniform")
        return point

    def objective(trial) -> float:
        point = suggest(trial)
        setting = apply_point(params, point)
        seed = trial_seed(params.seed, trial.number)
        learner = build_learner(learner_config(setting, params), seed, device)
        budget_settings = train_settings(setting, params, search.iterations)
        state, done = None, 0
        for rung in rungs:
            try:
                state = meta_train(learner, pool, budget_settings, seed, stop_at=rung, state=state)
                value = validation_mse(learner, splits["meta_val"], search.objective_steps, params.tasks.shots, device)
            except Exception:  # noqa: BLE001 - a diverged trial is a failed trial, as in metahpo's search
                used[0] += rung - done
                events.append((used[0], math.nan, point, seed))
                return math.nan
            used[0] += rung - done
            done = rung
            events.append((used[0], value if rung == search.iterations else math.nan, point, seed))
            if not math.isfinite(value):
                return math.nan
            trial.report(value, rung)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    def stop_at_budget(study, trial) -> None:
        if used[0] >= budget:
            study.stop()

    sampler = optuna.samplers.TPESampler(seed=params.seed)
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=search.min_iterations, max_resource=search.iterations, reduction_factor=search.eta
    )
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    study.optimize(objective, callbacks=[stop_at_budget])
    return events


def test_mse(params: Params, splits: dict, best: dict) -> float:
    """meta_test grid MSE after one step of the chosen setting trained for ``search.iterations``."""
    device = torch.device("cpu")
    setting = apply_point(params, best["point"])
    learner = build_learner(learner_config(setting, params), best["seed"], device)
    pool = TaskPool.from_split(splits["meta_train"], device)
    meta_train(learner, pool, train_settings(setting, params, params.search.iterations), best["seed"])
    return validation_mse(learner, splits["meta_test"], 1, params.tasks.shots, device)


def one_search(job: tuple[str, int, argparse.Namespace]) -> dict:
    method, seed, args = job
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    splits = data()
    params = bench_params(args, seed, method)
    budget = args.iterations * args.trials
    start = time.perf_counter()
    events = optuna_search(params, splits, budget) if method.startswith("optuna") else metahpo_search(params, splits)
    seconds = time.perf_counter() - start
    within = [e for e in events if e[0] <= budget and math.isfinite(e[1])]
    _, value, point, trial_seed = min(within, key=lambda e: e[1])  # the setting chosen within the budget
    best = {"objective": value, "point": point, "seed": trial_seed}
    return {"method": method, "seed": seed, "events": [e[:2] for e in events], "best": best, "seconds": seconds,
            "test_mse": test_mse(params, splits, best)}  # fmt: skip


def best_by(events: list, compute: float) -> float:
    """The best full-length objective among events that ended within ``compute`` trial-iterations."""
    values = [v for used, v in events if used <= compute and math.isfinite(v)]
    return min(values) if values else math.nan


def reached_at(events: list, target: float) -> float:
    """Compute at which the events first reached ``target`` or better (NaN if never)."""
    return next((used for used, v in events if math.isfinite(v) and v <= target), math.nan)


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "never"
    text = f"{fmt.format(statistics.median(finite))} ({fmt.format(min(finite))}-{fmt.format(max(finite))})"
    return text + (f", {len(values) - len(finite)} never" if len(finite) < len(values) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2700)
    parser.add_argument("--min-iterations", type=int, default=300)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--trials", type=int, default=16, help="full trials of plain GP: the budget of every method")
    parser.add_argument("--jobs", type=int, default=2, help="searches at a time, one thread each")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--report-only", action="store_true", help="print the table and figure of the saved results")
    args = parser.parse_args()
    methods = args.methods.split(",")
    budget = args.iterations * args.trials
    out = Path(__file__).with_suffix(".json")
    if args.report_only:
        results = json.loads(out.read_text())
        report(results, [m for m in methods if any(r["method"] == m for r in results)], budget, args)
        return
    jobs = [(m, s, args) for s in range(args.seeds) for m in methods]
    import multiprocessing

    results = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(one_search, job) for job in jobs]):
            result = future.result()
            results.append(result)
            print(f"# {result['method']}, seed {result['seed']}: best {result['best']['objective']:.4f}, "
                  f"test {result['test_mse']:.4f}, {result['seconds']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
            # Every finished search is kept: an interrupted run still leaves its results.
            out.with_suffix(".json.tmp").write_text(json.dumps(results, indent=1, default=str))
            out.with_suffix(".json.tmp").replace(out)
    report(results, methods, budget, args)


def report(results: list[dict], methods: list[str], budget: int, args) -> None:
    by = {m: sorted((r for r in results if r["method"] == m), key=lambda r: r["seed"]) for m in methods}
    gp_final = {r["seed"]: best_by(r["events"], budget) for r in by.get("gp", [])}
    print(f"search methods at equal compute: default sinusoid space, full trials of {args.iterations} iterations, "
          f"rungs {fidelity.rung_iterations(args.iterations, args.min_iterations, args.eta)} (eta {args.eta}), "
          f"budget {budget:,} trial-iterations (plain GP: {args.trials} trials), "
          f"{len({r['seed'] for r in results})} seeds; median (min-max) over seeds")  # fmt: skip
    print()
    print("| method | best meta_val MSE at 1/3 budget | at 2/3 | at full budget | compute to reach GP's final best "
          "| meta_test MSE of the chosen setting | trial-iterations used | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for method in methods:
        rows = by[method]
        cells = [spread([best_by(r["events"], budget * f) for r in rows]) for f in (1 / 3, 2 / 3, 1)]
        to_gp = [reached_at(r["events"], gp_final.get(r["seed"], math.nan)) / budget for r in rows]
        to_gp = [v if v <= 1 else math.nan for v in to_gp]
        used = [r["events"][-1][0] if r["events"] else 0 for r in rows]
        print(f"| {method} | {' | '.join(cells)} | {spread(to_gp, '{:.2f}')} of the budget | "
              f"{spread([r['test_mse'] for r in rows])} | {spread(used, '{:,.0f}')} | "
              f"{spread([r['seconds'] for r in rows], '{:.0f}')} |")  # fmt: skip
    figure(by, methods, budget)


def figure(by: dict, methods: list[str], budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(budget / 50, budget, 100)
    fig, ax = plt.subplots(figsize=(8, 5))
    for method in methods:
        curves = np.array([[best_by(r["events"], c) for c in grid] for r in by[method]])
        median = np.nanmedian(curves, axis=0)
        ax.plot(grid, median, label=method)
        ax.fill_between(grid, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0), alpha=0.15)
    ax.set(xlabel="trial-iterations used", ylabel="best full-length meta_val grid MSE (median, min-max)",
           yscale="log", title="search methods at equal compute")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(Path(__file__).with_suffix(".png"), dpi=100, bbox_inches="tight", metadata={"Software": None})


if __name__ == "__main__":
    main()
