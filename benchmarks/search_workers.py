"""Wall time of one search with 1 and with 2 local worker processes, in the same run.

Usage: ``python benchmarks/search_workers.py [--n-calls N] [--iterations I]``. Each worker uses one
torch thread (``threads: 1``), so 2 workers on 2 cores should approach 2x.
"""

from __future__ import annotations

import argparse

from search_common import benchmark_params, timed_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-calls", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    print(f"gp search, {args.n_calls} trials of {args.iterations} meta-iterations, space from params.yaml\n")
    print("| workers | wall seconds | seconds per trial | speed-up vs 1 worker |")
    print("|---|---|---|---|")
    base = None
    for workers in (1, 2):
        seconds, _, rows = timed_search(benchmark_params(args.iterations, args.n_calls, workers))
        base = base or seconds
        print(f"| {workers} | {seconds:.1f} | {seconds / len(rows):.2f} | {base / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
