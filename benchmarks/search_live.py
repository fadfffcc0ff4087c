"""Live confirmation: metahpo's default search against Optuna TPE + HyperbandPruner on real sinusoid trainings.

Usage: ``python benchmarks/search_live.py [--seeds 10] [--first-seed 0] [--jobs 2] [--retrain 0]
[--out benchmarks/search_live] [--report-only]``. Needs Optuna (the ``bench`` extra).

Both methods search params.yaml's sinusoid space at its default settings, on the task data the generate stage
makes from params.yaml (seed 0), and train with metahpo's own trial function (``run_trial``: the search's
objective on meta_val, its training seeds, a rung continuing from the previous rung's state). Run ``s`` uses
``seed: s`` for the search's own decisions and training seeds, so the two methods of one run are paired:

* ``metahpo default``: the search stage's :class:`~metahpo.search.driver.Search` on params.yaml (``search.fidelity:
  asha``, ``search.workers`` local processes), exactly as ``dvc repro`` runs it. It spends the compute of its plan.
* ``optuna tpe + hyperband``: Optuna's ``TPESampler(seed=s)`` with its ``HyperbandPruner`` (min 900, max 8,100
  iterations, reduction factor 3: the same rungs), one trial at a time in one process, reported and pruned at
  every rung, until it has spent the same compute as metahpo's run of the same seed. A setting above
  ``search.max_cost`` is told as failed without training or compute (lenient: Optuna knows no costs).

Compute is counted as metahpo's ``asha`` counts it: a rung's iterations times the setting's estimated cost per
iteration relative to the untuned setting's. Reported: each run's best full-length meta_val (grid MSE) found within
the budget and at a third and two thirds of it, the paired wins / ties / losses with a Wilcoxon signed-rank p,
and the compute each method needed to reach the other's final best (runs that never do count as never).

A run's final best is one noisy training of the setting it chose, and a method that trains more settings to full
length picks the luckiest of more draws. ``--retrain N`` therefore trains each run's chosen setting again for
the whole trial length with ``N`` fresh training seeds (params seeds ``1000 + r``, never a search's), the same
seeds for every setting, and compares the methods by the mean of those trainings' meta_val.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METHODS = ("metahpo default", "optuna tpe + hyperband")
DATA_SEED = 0  # the task data of every run: the committed default's (params.yaml's seed, 0)
RETRAIN_SEED = 1000  # the r-th retraining runs with params seed 1000 + r; the searches' seeds stay below


def run_params(seed: int, overrides: dict, workers: int | None = None):
    """params.yaml on the CPU with ``seed: seed``, the ``--set`` overrides (dotted keys), and ``search.workers``."""
    from metahpo.params import Params, read_params_file
    from metahpo.recipes import with_values

    raw = with_values(read_params_file(ROOT / "params.yaml"), overrides, "--set")
    raw.update(seed=seed, device="cpu")
    raw["search"].update(executor="local", address=None)
    if workers is not None:
        raw["search"]["workers"] = workers
    return Params.from_dict(raw)


def budget_of(search) -> float:
    """The compute metahpo's default search plans (untuned-setting iterations)."""
    from metahpo.search.library_stage import library_plan, price_of

    return library_plan(search.search, price_of(search), search.seed)["compute"]


def run_metahpo(seed: int, overrides: dict) -> dict:
    """metahpo's default search, as the stage runs it; its jobs in decision order."""
    from search_common import make_search

    with tempfile.TemporaryDirectory() as tmp:
        search = make_search(run_params(seed, overrides), Path(tmp), DATA_SEED)
        start = time.perf_counter()
        search.run()
        seconds = time.perf_counter() - start
        events = [
            {"trial": e["trial"], "budget": e["budget"], "value": e["value"], "compute": e["compute_used"],
             "point": e["setting"]}
            for e in search.history
        ]  # fmt: skip
        return {"events": events, "budget": budget_of(search), "seconds": seconds,
                "full": search.search.iterations}  # fmt: skip


def run_optuna(seed: int, overrides: dict) -> dict:
    """Optuna TPE + HyperbandPruner by ask/tell on metahpo's trial function, to metahpo's compute for ``seed``."""
    import optuna
    import torch
    from search_common import make_search
    from search_peers import suggest  # the tabular benchmark's mapping of the space onto Optuna's suggestions

    from metahpo.search.rungs import rung_iterations
    from metahpo.search.trial import run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    params = run_params(seed, overrides, workers=1)
    s = params.search
    rungs = rung_iterations(s.iterations, s.min_iterations, s.eta)
    with tempfile.TemporaryDirectory() as tmp:
        search = make_search(params, Path(tmp), DATA_SEED)
        budget = budget_of(search)
        sampler = optuna.samplers.TPESampler(seed=seed)
        pruner = optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=rungs[-1], reduction_factor=s.eta)
        # HyperbandPruner assigns brackets by a hash of the study's name, random unless named.
        study = optuna.create_study(study_name=f"search-live-{seed}", direction="minimize", sampler=sampler,
                                    pruner=pruner)  # fmt: skip
        events, spent, refused, start = [], 0.0, 0, time.perf_counter()
        while spent < budget:
            trial = study.ask()
            point = suggest(trial, s.space)
            if search.too_costly(point):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                refused += 1
                if refused == 10_000:
                    raise RuntimeError(f"seed {seed}: Optuna proposed 10,000 settings above search.max_cost in a row")
                continue
            refused, relative = 0, search.cost(point) / search.baseline_cost
            states, done, value = None, 0, math.nan
            for rung in rungs:
                result = run_trial(search._request(trial.number, point, stop_at=rung, resume=states))
                spent += (rung - done) * relative
                done, states = rung, result.states
                value = result.objective if result.status == "ok" and math.isfinite(result.objective) else math.nan
                events.append({"trial": trial.number, "budget": rung, "value": value, "compute": spent, "point": point})
                if not math.isfinite(value):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    break
                trial.report(value, rung)
                if rung < rungs[-1] and trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, value)
        return {"events": events, "budget": budget, "seconds": time.perf_counter() - start, "full": rungs[-1]}


def one_run(job: tuple[str, int, dict]) -> tuple[str, int, dict]:
    """Run one method with one seed (a process-pool job): ``(method, seed, overrides)`` -> ``(method, seed, run)``."""
    method, seed, overrides = job
    return method, seed, (run_metahpo if method == "metahpo default" else run_optuna)(seed, overrides)


def full_results(run: dict, compute: float) -> list[dict]:
    """The run's full-length jobs with a finite value that ended within ``compute``, in the order they ended."""
    return [e for e in run["events"]
            if e["budget"] == run["full"] and e["compute"] <= compute and math.isfinite(e["value"])]  # fmt: skip


def best_within(run: dict, compute: float) -> float:
    """The best full-length value among jobs that ended within ``compute`` (inf before the first)."""
    return min((e["value"] for e in full_results(run, compute)), default=math.inf)


def compute_to_reach(run: dict, target: float) -> float:
    """The compute at which ``run`` first found a full-length value at most ``target`` within its budget."""
    return next((e["compute"] for e in full_results(run, run["budget"]) if e["value"] <= target), math.inf)


def chosen_point(run: dict) -> dict | None:
    """The setting of the run's final best: its best full-length value within the budget (None if it has none)."""
    full = full_results(run, run["budget"])
    if not full:
        return None
    best = min(full, key=lambda e: e["value"])
    if "point" not in best:
        raise SystemExit("--retrain: the saved runs do not record their points (runs saved before the points were "
                         "recorded); run them again into another --out")  # fmt: skip
    return best["point"]


def point_key(point: dict) -> str:
    return json.dumps(point, sort_keys=True)


def retrain(job: tuple[dict, int, dict]) -> tuple[str, int, float]:
    """``(point, r, overrides)``: the point trained for the whole trial length with the ``r``-th fresh training seed;
    its search objective on meta_val (NaN for a failed training)."""
    from search_common import make_search

    from metahpo.search.trial import run_trial

    point, r, overrides = job
    with tempfile.TemporaryDirectory() as tmp:
        search = make_search(run_params(RETRAIN_SEED + r, overrides, workers=1), Path(tmp), DATA_SEED)
        result = run_trial(search._request(0, point))
    value = result.objective if result.status == "ok" and math.isfinite(result.objective) else math.nan
    return point_key(point), r, value


def retrained_mean(run: dict, retrained: dict, n: int) -> float:
    """The mean of the run's chosen setting's ``n`` retrainings (inf without a chosen setting or with a failed one)."""
    point = chosen_point(run)
    if point is None:
        return math.inf
    values = retrained[point_key(point)][:n]
    return statistics.fmean(values) if None not in values else math.inf


def paired(a: list[float], b: list[float]) -> tuple[int, int, float]:
    """Wins of ``a`` (lower), ties, and the Wilcoxon signed-rank p; inf against inf is a tie."""
    from scipy.stats import wilcoxon

    diff = [0.0 if x == y else x - y for x, y in zip(a, b)]
    ranked = [(-1.0 if d < 0 else 1.0) * min(abs(d), 1e300) for d in diff]
    p = wilcoxon(ranked).pvalue if any(ranked) else 1.0
    return sum(d < 0 for d in diff), sum(d == 0 for d in diff), p


def report(runs: dict, seeds: list[int], retrained: dict | None = None, n: int = 0) -> str:
    """The paired comparison, as text; with ``n``, also by the chosen settings' first ``n`` retrainings."""
    a, b = METHODS
    lines = ["seed  budget   " + "  ".join(f"{m + ' (1/3, 2/3, all; s)':>44}" for m in METHODS)]
    finals = {m: [] for m in METHODS}
    reach = {m: [] for m in METHODS}
    for seed in seeds:
        cells = []
        for m in METHODS:
            run = runs[m][str(seed)]
            at = [best_within(run, run["budget"] * f) for f in (1 / 3, 2 / 3, 1.0)]
            finals[m].append(at[-1])
            cells.append(f"{at[0]:.4f} {at[1]:.4f} {at[2]:.4f} ({run['seconds']:6.0f} s)")
        for m, other in ((a, b), (b, a)):
            reach[m].append(compute_to_reach(runs[m][str(seed)], finals[other][-1]) / runs[m][str(seed)]["budget"])
        lines.append(f"{seed:4d}  {runs[a][str(seed)]['budget']:7,.0f}  " + "  ".join(f"{c:>44}" for c in cells))
    # A run with no full-length result scores inf: two of them are a tie, one loses to any finite value.
    wins, ties, p = paired(finals[a], finals[b])
    lines += [
        "",
        f"median final best: {a} {statistics.median(finals[a]):.4f}, {b} {statistics.median(finals[b]):.4f}",
        f"{a} lower on {wins} of {len(seeds)} seeds, level on {ties}, higher on {len(seeds) - wins - ties} "
        f"(Wilcoxon signed-rank p = {p:.3g})",
    ]
    for m in METHODS:
        mine = [runs[m][str(s)] for s in seeds]
        within = [[e for e in run["events"] if e["compute"] <= run["budget"]] for run in mine]
        started = statistics.median(len({e["trial"] for e in events}) for events in within)
        full = statistics.median(sum(e["budget"] == run["full"] for e in events) for run, events in zip(mine, within))
        lines.append(f"{m}: {started:g} trials started and {full:g} full-length results within the budget (medians)")
    for m, other in ((a, b), (b, a)):
        fractions = reach[m]
        never = sum(math.isinf(f) for f in fractions)
        lines.append(f"{m}: median fraction of its budget to reach {other}'s final best "
                     f"{statistics.median(fractions):.2f} (never on {never} of {len(seeds)} seeds)")  # fmt: skip
    if n:
        means = {m: [retrained_mean(runs[m][str(s)], retrained or {}, n) for s in seeds] for m in METHODS}
        wins, ties, p = paired(means[a], means[b])
        lines += ["", f"the chosen settings retrained with {n} fresh training seeds each (mean meta_val per setting):"]
        lines += [f"{s:4d}  " + "  ".join(f"{m} {means[m][i]:.4f}" for m in METHODS) for i, s in enumerate(seeds)]
        lines += [
            f"median retrained: {a} {statistics.median(means[a]):.4f}, {b} {statistics.median(means[b]):.4f}",
            f"{a} lower on {wins} of {len(seeds)} seeds, level on {ties}, higher on {len(seeds) - wins - ties} "
            f"(Wilcoxon signed-rank p = {p:.3g})",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run both methods on every seed (or re-score with ``--report-only``); write OUT.json and OUT.txt."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="Optuna runs at a time (metahpo runs on search.workers)")
    parser.add_argument("--out", type=Path, default=HERE / "search_live")
    parser.add_argument("--report-only", action="store_true", help="re-score the runs saved in OUT.json")
    parser.add_argument("--retrain", type=int, default=0, metavar="N",
                        help="retrain each run's chosen setting with N fresh training seeds")  # fmt: skip
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="params overrides (dotted keys, YAML values), e.g. for a small trial run")  # fmt: skip
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or args.retrain < 0:
        parser.error("--seeds and --jobs must be at least 1, --retrain at least 0")
    if args.first_seed < 0 or args.first_seed + args.seeds > RETRAIN_SEED:
        parser.error(f"--first-seed, --seeds: the searches' seeds must lie in 0 .. {RETRAIN_SEED - 1} "
                     "(the retrainings use the seeds above)")  # fmt: skip
    from metahpo.errors import ConfigError, first_line
    from metahpo.recipes import parse_override

    try:
        overrides = dict(parse_override(text) for text in args.set)
        search = run_params(args.first_seed, overrides).search  # checked here, before any run
    except ConfigError as exc:
        parser.error(f"--set: {first_line(exc)}")
    if search.fidelity != "asha" or search.fidelity_unit != "iterations":
        parser.error("--set: the comparison needs search.fidelity: asha and search.fidelity_unit: iterations "
                     f"(got {search.fidelity}, {search.fidelity_unit})")  # fmt: skip
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    saved = Path(f"{args.out}.json")
    stored = json.loads(saved.read_text()) if saved.exists() else {"runs": {}, "overrides": overrides}
    if stored.get("overrides", {}) != overrides:
        parser.error(f"--set: {saved} holds runs with other overrides ({stored.get('overrides', {})}); "
                     "use another --out")  # fmt: skip
    runs, retrained = stored["runs"], stored.get("retrained", {})
    if not args.report_only:
        todo = [(m, s, overrides) for m in reversed(METHODS) for s in seeds if str(s) not in runs.get(m, {})]
        optuna_jobs = [j for j in todo if j[0] != "metahpo default"]
        with ProcessPoolExecutor(args.jobs) as pool:
            for method, seed, run in pool.map(one_run, optuna_jobs):
                _keep(saved, runs, retrained, overrides, method, seed, run)
        for job in (j for j in todo if j[0] == "metahpo default"):  # its own workers use the cores
            _keep(saved, runs, retrained, overrides, *one_run(job))
    missing = [(m, s) for m in METHODS for s in seeds if str(s) not in runs.get(m, {})]
    if missing:
        raise SystemExit(f"{saved}: no run of {missing[0][0]} with seed {missing[0][1]}")
    if args.retrain:
        points = {point_key(p): p for m in METHODS for s in seeds if (p := chosen_point(runs[m][str(s)])) is not None}
        todo = [(p, r, overrides) for key, p in sorted(points.items()) for r in range(args.retrain)
                if len(retrained.get(key, [])) <= r]  # fmt: skip
        if todo and args.report_only:
            raise SystemExit(f"--report-only: {len(todo)} retrainings of --retrain {args.retrain} are not in {saved}")
        with ProcessPoolExecutor(args.jobs) as pool:
            for key, r, value in pool.map(retrain, todo):
                values = retrained.setdefault(key, [])
                assert len(values) == r, "the retrainings of a setting arrive in order"
                values.append(value if math.isfinite(value) else None)  # None: the training failed
                _save(saved, runs, retrained, overrides)
                print(f"retrained {key} with params seed {RETRAIN_SEED + r}: {value:.4f}", file=sys.stderr)
    text = report(runs, seeds, retrained, args.retrain)
    Path(f"{args.out}.txt").write_text(text + "\n")
    print(text)


def _save(path: Path, runs: dict, retrained: dict, overrides: dict) -> None:
    from metahpo.atomic import write_json

    write_json(path, {"runs": runs, "overrides": overrides, **({"retrained": retrained} if retrained else {})})


def _keep(path: Path, runs: dict, retrained: dict, overrides: dict, method: str, seed: int, run: dict) -> None:
    """Record a finished run at once, so that an interrupted benchmark resumes where it stopped."""
    runs.setdefault(method, {})[str(seed)] = run
    _save(path, runs, retrained, overrides)
    final = best_within(run, run["budget"])
    print(f"{method} seed {seed}: best {final:.4f} in {run['seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
