"""gp, forest, random and grid search with the same trial budget on the sinusoid task, several seeds.

Usage: ``python benchmarks/search_methods.py [--seeds 3] [--n-calls 16] [--iterations 1000]``.
Prints the best meta_val MSE so far after every few trials (mean over seeds) and a summary table,
and saves the best-so-far curves to ``benchmarks/search_methods.png``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from search_common import benchmark_params, timed_search  # noqa: E402

METHODS = ("gp", "forest", "random", "grid")


def best_so_far(rows: list[dict]) -> list[float]:
    """Best finished objective after each trial (NaN until the first finished one)."""
    curve, best = [], float("nan")
    for row in rows:
        if row["status"] == "ok":
            best = row["objective"] if np.isnan(best) else min(best, row["objective"])
        curve.append(best)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-calls", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    curves: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    for method in METHODS:
        for seed in range(args.seeds):
            params = benchmark_params(args.iterations, args.n_calls, args.workers)
            params["seed"] = seed
            params["search"]["method"] = method
            _, _, rows = timed_search(params)
            curves[method].append(best_so_far(rows))
            print(f"{method} seed {seed}: best {curves[method][-1][-1]:.4f}", flush=True)
    marks = sorted({min(args.n_calls, m) for m in (4, 8, 12, args.n_calls)})
    print(f"\n{args.n_calls} trials of {args.iterations} meta-iterations, {args.seeds} seeds; meta_val grid MSE\n")
    print("| method | " + " | ".join(f"best after {m} trials" for m in marks) + " | final, mean ± std over seeds |")
    print("|---" * (len(marks) + 2) + "|")
    for method in METHODS:
        values = np.array(curves[method])
        cells = [f"{np.nanmean(values[:, m - 1]):.3f}" for m in marks]
        final = values[:, -1]
        print(f"| {method} | " + " | ".join(cells) + f" | {final.mean():.3f} ± {statistics.pstdev(final):.3f} |")
    fig, ax = plt.subplots(figsize=(7, 4))
    for method in METHODS:
        ax.plot(
            range(1, args.n_calls + 1), np.nanmean(np.array(curves[method]), axis=0), marker="o", ms=3, label=method
        )
    ax.set(xlabel="trial", ylabel="best meta_val grid MSE so far (mean over seeds)", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(Path(__file__).with_name("search_methods.png"), dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
