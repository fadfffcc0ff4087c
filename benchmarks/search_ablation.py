"""Ablation of metahpo.search.minimize's choices on a closed-form multi-fidelity objective.

The objective has crossing learning curves (a setting's final value and how fast it gets there are
unrelated), categorical and inactive dimensions, a failing region and seeded observation noise, so each
choice of the GP method (``GP_OPTIONS``) can be switched off alone and compared on many paired seeds in
minutes. It is a sanity check of the choices, not the benchmark against other tools (``search_peers.py``).

    python benchmarks/search_ablation.py --seeds 20 --out benchmarks/search_ablation.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from metahpo.search import minimize

SPACE = {
    "algorithm": {"type": "categorical", "values": ["maml", "fomaml", "metasgd", "cnp"]},
    "inner_lr": {"type": "real", "low": 0.001, "high": 0.5, "prior": "log-uniform"},
    "outer_lr": {"type": "real", "low": 0.0001, "high": 0.03, "prior": "log-uniform"},
    "inner_steps": {"type": "integer", "low": 1, "high": 3, "prior": "uniform"},
    "hidden": {"type": "integer", "low": 20, "high": 100, "prior": "uniform"},
}
ACTIVE = {"inner_lr": ["maml", "fomaml", "metasgd"], "inner_steps": ["maml", "fomaml", "metasgd"]}
OFFSET = {"maml": 0.15, "fomaml": 0.3, "metasgd": 0.0, "cnp": 0.45}
MAX_BUDGET, MIN_BUDGET, ETA = 8100, 900, 3


def final(setting: dict) -> float:
    """The noise-free value at the full budget: minimum 0.1 at metasgd, inner_lr 0.03, outer_lr 0.002, hidden 80."""
    value = 0.1 + OFFSET[setting["algorithm"]] + 0.25 * math.log10(setting["outer_lr"] / 0.002) ** 2
    value += 0.1 * ((setting["hidden"] - 80) / 40) ** 2
    if setting["algorithm"] != "cnp":
        value += 0.3 * math.log10(setting["inner_lr"] / 0.03) ** 2 + 0.03 * (3 - setting["inner_steps"])
    return value


def objective_for(seed: int):
    """The objective of one search seed: a learning curve per setting, seeded noise per (setting, budget)."""

    def objective(setting: dict, budget: int, state):
        if setting["algorithm"] != "cnp" and setting["inner_lr"] * setting["inner_steps"] > 0.6:
            return math.nan, None  # diverges
        # Higher outer rates converge faster (crossing curves): the gap at budget b is speed-scaled.
        speed = (setting["outer_lr"] / 0.002) ** 0.5
        gap = 1.5 * math.exp(-speed * budget / 3000)
        key = zlib.crc32(json.dumps([seed, sorted(setting.items()), budget]).encode())  # stable across processes
        noise = np.random.default_rng(key).normal(0.0, 0.02)
        return final(setting) + gap + noise, None

    return objective


BEST = 0.1
CONFIGS = {
    "default": {},
    "transform=none": {"transform": "none"},
    "initial=random": {"initial": "random"},
    "promote_by=rung": {"promote_by": "rung"},
    "parallel=none": {"parallel": "none"},
    "gp+hyperband": {"fidelity": "hyperband"},
    "random+asha": {"method": "random"},
    "tpe+asha": {"method": "tpe"},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--compute", type=int, default=MAX_BUDGET * 20, help="trial-iterations per search")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/search_ablation.json"))
    args = parser.parse_args(argv)
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        print(f"--configs: unknown {unknown[0]!r} (expected some of {', '.join(CONFIGS)})", file=sys.stderr)
        return 2
    regret: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, float] = {n: 0.0 for n in names}
    for name in names:
        for seed in range(args.seeds):
            options = {"fidelity": "asha", "method": "gp", **CONFIGS[name]}
            start = time.process_time()
            result = minimize(
                objective_for(seed), SPACE, MAX_BUDGET, MIN_BUDGET, ETA, compute=args.compute,
                workers=args.workers, seed=seed, active=ACTIVE, **options,
            )  # fmt: skip
            seconds[name] += time.process_time() - start
            regret[name].append(final(result.best["setting"]) - BEST)
        print(f"{name}: median regret {statistics.median(regret[name]):.4f}", file=sys.stderr)
    rows = {}
    for name in names:
        row = {
            "median_regret": statistics.median(regret[name]),
            "mean_regret": statistics.fmean(regret[name]),
            "cpu_seconds_per_search": seconds[name] / args.seeds,
        }
        if name != "default" and "default" in regret:
            diff = np.array(regret["default"]) - np.array(regret[name])
            row["default_better_seeds"] = int((diff < 0).sum())
            row["default_worse_seeds"] = int((diff > 0).sum())
            row["wilcoxon_p"] = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        rows[name] = row
    report = {"seeds": args.seeds, "compute": args.compute, "workers": args.workers, "configs": rows, "regret": regret}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for name, row in rows.items():
        print(name, json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
