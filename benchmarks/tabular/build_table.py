"""Build a tabular benchmark: learning curves of a Sobol design of settings, each trained with a few seeds.

Usage: ``python benchmarks/tabular/build_table.py [--family sinusoid] [--settings 256] [--seeds 3] [--every 100]
[--iterations N] [--max-settings N] [--shard K/N] [--out benchmarks/tabular]``

The design is a scrambled Sobol sequence (scipy ``qmc.Sobol``, seed 0) over the MAML family's part of the
``search.space`` of params.yaml (algorithm in maml, fomaml, metasgd, anil; every other dimension as in
params.yaml), each point pinned (:func:`metahpo.search.proposers.pin_inactive`) and deduplicated in Sobol order,
so that any prefix of the table is a prefix of the design. Settings above ``search.max_cost`` are left out
of the design, as the search never trains them. Every setting is trained ``--seeds`` times for the full
trial length (``search.iterations``) by :func:`metahpo.search.trial.run_trial`, the function a search trial runs:
the median rule's checkpoints, with no medians to stop against, record the search objective on meta_val
(``search.objective_steps`` steps) every ``--every`` iterations, and the trained learner is also scored on
meta_test (never read by a search method). Since a rung's training stops and continues bit-identically, the
curve's value at iteration ``b`` is what a trial stopped at a rung of ``b`` iterations reports.

Files (``FAMILY`` is the task family):

* ``FAMILY.design.json``: the params, the seeds and the design, written once; a rerun must find the same,
  except in the params sections no trial reads (``train``, ``evaluate``: see ``table.read_design``).
* ``FAMILY.jsonl``: one row per finished (setting, seed), appended with one ``write`` and fsync'd, so the
  build can be killed and rerun any time (a torn last line is dropped on the next start). Values are
  ``null`` where the objective was not finite; a row of status ``failed`` has the curve up to the failure.

One process per ``--shard``, one torch thread each, on the CPU: run them under ``nice -n 19``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import yaml
from scipy.stats import qmc

ROOT = Path(__file__).resolve().parents[2]
MAML_FAMILY = ("maml", "fomaml", "metasgd", "anil")
FAMILIES = ("sinusoid", "digits")
TABLE_MAX_COST = 9


def table_params(family: str, iterations: int | None, every: int) -> dict:
    """params.yaml for the table: the family's recipe (``recipes/FAMILY.yaml``), the MAML family's space, CPU,
    one thread, a checkpoint every ``every`` iterations."""
    from metahpo.recipes import with_recipe

    raw = with_recipe(yaml.safe_load((ROOT / "params.yaml").read_text()), family, ROOT / "recipes")
    raw.update(device="cpu", threads=1)
    search = raw["search"]
    if iterations is not None:
        search["iterations"] = iterations
    if search["iterations"] % every:
        raise SystemExit(f"--every: {every} does not divide search.iterations ({search['iterations']})")
    search.update(repeats=1, class_folds=1, start_from_default=False, fidelity="none", fidelity_unit="iterations",
                  executor="local")  # fmt: skip
    search["median_stop"] = {"enabled": True, "checkpoints": search["iterations"] // every, "min_trials": 1}
    search["space"]["algorithm"] = {"type": "categorical", "values": list(MAML_FAMILY)}
    # The tables hold the settings up to 9x the untuned cost, the default's cap when they were built; a search
    # under a lower cap searches a subset of them.
    search["max_cost"] = TABLE_MAX_COST
    return raw


def sobol_design(space: dict, count: int, seed: int = 0, allowed=None) -> tuple[list[dict], int, int]:
    """The first ``count`` distinct pinned points of a scrambled Sobol sequence over ``space``, in Sobol order.

    ``allowed(point)``: whether a point may enter the design (the search's ``max_cost``). Also returns how many
    Sobol points were drawn to find them, and how many of those ``allowed`` refused.
    """
    from metahpo.search.proposers import build_space, pin_inactive

    dims = build_space(space)
    sampler = qmc.Sobol(d=len(dims), scramble=True, seed=seed)
    points, seen, drawn, refused = [], set(), 0, 0
    while len(points) < count:
        block = sampler.random(max(count, 64))
        for u in block:
            drawn += 1
            point = pin_inactive([_from_unit(dim, float(v)) for dim, v in zip(dims, u)], dims)
            key = tuple(point)
            if key not in seen:
                seen.add(key)
                named = dict(zip([d.name for d in dims], point))
                if allowed is None or allowed(named):
                    points.append(named)
                else:
                    refused += 1
            if len(points) == count:
                break
        if drawn > 64 * count:
            raise SystemExit(f"search.space: only {len(points)} distinct settings; --settings {count} is too many")
    return points, drawn, refused


def within_cost(params):
    """Whether a point costs at most ``search.max_cost`` times the untuned setting (always, without a cap)."""
    from metahpo.learners.cost import setting_macs
    from metahpo.learners.settings import apply_point, default_setting

    cap = params.search.max_cost
    baseline = setting_macs(default_setting(params), params)
    return lambda point: cap is None or setting_macs(apply_point(params, point), params) <= cap * baseline


def _from_unit(dim, u: float):
    """The value of ``dim`` at ``u`` in [0, 1): categories and integers equally likely, reals by their prior."""
    from skopt.space import Categorical, Integer

    if isinstance(dim, Categorical):
        return dim.categories[min(int(u * len(dim.categories)), len(dim.categories) - 1)]
    if isinstance(dim, Integer):
        return int(min(dim.low + int(u * (dim.high - dim.low + 1)), dim.high))
    low, high = float(dim.low), float(dim.high)
    if dim.prior == "log-uniform":
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    return float(low + u * (high - low))


def training_seeds(seed: int, count: int) -> list[int]:
    """The training seeds of every setting (the same for all settings: common random numbers)."""
    from metahpo.seeds import trial_seed

    return [trial_seed(seed, 10_000 + j) for j in range(count)]


def finite_or_none(value: float) -> float | None:
    """``value``, or None (JSON null) where it is NaN or infinite."""
    return float(value) if math.isfinite(value) else None


def load_rows(path: Path) -> list[dict]:
    """The finished rows of ``path``; a torn last line (a killed write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    if good < len(data):
        print(f"{path}: dropping a torn last line ({len(data) - good} bytes)", file=sys.stderr)
        with open(path, "r+b") as fh:
            fh.truncate(good)
    rows = []
    for number, line in enumerate(data[:good].splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{number}: not a JSON row ({exc})") from None
    return rows


def append_row(path: Path, row: dict) -> None:
    """Append one JSON line with a single write, then fsync, so a kill leaves whole rows (or one torn line)."""
    line = (json.dumps(row, sort_keys=True, allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def make_data(params) -> dict:
    """Every split of the family, generated in memory from params (as the generate stage does)."""
    from metahpo.tasks.generate import classification_splits, regression_splits

    make = classification_splits if params.tasks.classification else regression_splits
    splits, _, summary = make(params.tasks, params.seed)
    print(f"tasks: {summary}", file=sys.stderr)
    return splits


def train_row(params, data: dict, setting: int, point: dict, seed_index: int, seed: int) -> dict:
    """Train ``point`` once with ``seed`` through ``run_trial``; its curve, final meta_val and meta_test."""
    from metahpo.search.trial import TrialRequest, run_trial

    request = TrialRequest(
        trial=setting, point=point, seed=seed, params=params, folds=[(data["meta_train"], data["meta_val"])],
        test_split=data["meta_test"],
    )  # fmt: skip
    result = run_trial(request)
    return {
        "setting": setting,
        "seed_index": seed_index,
        "seed": seed,
        "status": result.status,
        "curve": [finite_or_none(v) for v in result.curve],
        "meta_val": finite_or_none(result.objective),
        "meta_test": finite_or_none(result.test_objectives[0]) if result.test_objectives else None,
        "error": result.error,
        "seconds": result.seconds,
    }


def main(argv: list[str] | None = None) -> None:
    """Build (or continue) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=FAMILIES, default="sinusoid")
    parser.add_argument("--settings", type=int, default=256, help="settings in the design")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per setting")
    parser.add_argument("--every", type=int, default=100, help="iterations between two meta_val values")
    parser.add_argument("--iterations", type=int, default=None, help="trial length (default: search.iterations)")
    parser.add_argument("--max-settings", type=int, default=None, help="stop after this many settings are done")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "--shard",
        default="0/1",
        help="K/N: train only the settings whose index is K modulo N "
        "(run N processes, K = 0..N-1, one per core; they append to the same file)",
    )
    args = parser.parse_args(argv)
    try:
        shard, shards = (int(x) for x in args.shard.split("/"))
        if not 0 <= shard < shards:
            raise ValueError
    except ValueError:
        parser.error(f"--shard: expected K/N with 0 <= K < N, got {args.shard!r}")
    for key in ("settings", "seeds", "every"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1")

    from metahpo.params import Params

    raw = table_params(args.family, args.iterations, args.every)
    params = Params.from_dict(raw)
    points, drawn, refused = sobol_design(raw["search"]["space"], args.settings, allowed=within_cost(params))
    seeds = training_seeds(params.seed, args.seeds)
    design = {
        "family": args.family,
        "params": raw,
        "every": args.every,
        "seeds": seeds,
        "sobol": {"seed": 0, "scramble": True, "drawn": drawn, "above_max_cost": refused},
        "points": points,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    design_path, rows_path = args.out / f"{args.family}.design.json", args.out / f"{args.family}.jsonl"
    if design_path.exists():
        from table import read_design

        if read_design(design_path) != json.loads(json.dumps(design)):
            raise SystemExit(f"{design_path}: a different design (params, seeds or settings); move it away first")
    else:
        from metahpo.atomic import write_json

        write_json(design_path, design)
    done = {(r["setting"], r["seed_index"]) for r in load_rows(rows_path)}
    todo = [(i, j) for i in range(len(points)) for j in range(len(seeds)) if (i, j) not in done and i % shards == shard]
    if args.max_settings is not None:
        todo = [(i, j) for i, j in todo if i < args.max_settings]
    print(f"{len(done)} rows done, {len(todo)} to train ({len(points)} settings x {len(seeds)} seeds)", file=sys.stderr)
    if not todo:
        return
    data = make_data(params)
    start = time.perf_counter()
    for count, (i, j) in enumerate(todo, start=1):
        row = train_row(params, data, i, points[i], j, seeds[j])
        append_row(rows_path, row)
        rate = (time.perf_counter() - start) / count
        print(
            f"setting {i} seed {j}: {row['status']} meta_val {row['meta_val']} meta_test {row['meta_test']} "
            f"({row['seconds']:.1f} s; {rate:.1f} s per row so far, {len(todo) - count} rows left)",
            file=sys.stderr,
            flush=True,
        )


if __name__ == "__main__":
    main()
