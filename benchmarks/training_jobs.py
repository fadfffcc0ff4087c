"""Wall time of a search whose trials have several trainings: one job per training against one per trial.

Usage: ``python benchmarks/training_jobs.py [--n-calls 8] [--iterations 1000] [--repeats 2] [--rounds 2]``.
The sinusoid search of params.yaml (scaled down as in ``search_workers.py``) with ``search.repeats``
trainings per trial and 2 local workers. metahpo runs each training as its own job; the peer, in the
same process, runs each trial as one job (``split_request`` patched to return the whole trial), as
metahpo did before. Both must write the same trial log; the best of ``--rounds`` is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from unittest import mock

from search_common import benchmark_params, timed_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-calls", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    params = benchmark_params(args.iterations, args.n_calls, 2)
    params["search"]["repeats"] = args.repeats
    best: dict[str, float] = {}
    logs: dict[str, str] = {}
    for _ in range(args.rounds):
        for jobs in ("one per trial", "one per training"):
            whole_trials = mock.patch("metahpo.search.split_request", lambda request: [request])
            with contextlib.nullcontext() if jobs == "one per training" else whole_trials:
                seconds, _, rows = timed_search(params)
            best[jobs] = min(seconds, best.get(jobs, float("inf")))
            logs[jobs] = json.dumps([{k: v for k, v in row.items() if k != "seconds"} for row in rows])
    assert logs["one per trial"] == logs["one per training"], "the two schedules wrote different trial logs"
    print(f"gp search, {args.n_calls} trials x {args.repeats} trainings of {args.iterations} meta-iterations, "
          f"2 workers, best of {args.rounds} rounds; identical trial logs\n")  # fmt: skip
    print("| jobs | wall seconds | speed-up vs one job per trial |")
    print("|---|---|---|")
    for jobs, seconds in best.items():
        print(f"| {jobs} | {seconds:.1f} | {best['one per trial'] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
