"""Learning curves of a few learners on a project's generated tasks: meta_val every ``train.log_every`` iterations.

Each learner is the project's untuned setting (params.yaml) with the given changes, meta-trained by the train
stage's own code (:func:`metahpo.learners.training.train_learner`) on meta_train and scored on meta_val only.
It shows which learner gains most from a given number of iterations, before a search spends them.

Run it in a project whose ``generate`` stage has run, e.g. after ``python -m metahpo.recipes omniglot`` and
``dvc repro generate``::

    python benchmarks/learning_curves.py --iterations 1000 --jobs 2 \\
        protonet='{"algorithm": "protonet"}' metasgd='{"algorithm": "metasgd"}' \\
        protomaml='{"algorithm": "protomaml"}'
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def curve(name: str, changes: dict, iterations: int, logs: str) -> tuple[dict[int, float], float, float]:
    """``({iteration: meta_val value}, best value, seconds)`` of one learner trained here."""
    import metahpo.search  # noqa: F401  (registers the learners' names with the params schema)
    from metahpo import paths
    from metahpo.learners.family import family_of
    from metahpo.learners.settings import default_setting
    from metahpo.learners.training import train_learner
    from metahpo.params import load_params
    from metahpo.runtime import setup
    from metahpo.tasks.storage import load_split

    params = load_params()
    device, family = setup(params), family_of(params)
    pool = family.make_pool(load_split(paths.TASKS, "meta_train"), device, joint=False)
    val = load_split(paths.TASKS, "meta_val")
    start = time.perf_counter()
    _, summary = train_learner(name, {**default_setting(params), **changes}, params, pool, val, device, logs=logs,
                               iterations=iterations)  # fmt: skip
    seconds = time.perf_counter() - start
    rows = (Path(logs) / name / "plots/metrics" / f"{family.val_metric}.tsv").read_text().splitlines()[1:]
    values = {int(step): float(value) for step, value in (row.split("\t")[:2] for row in rows)}
    return values, values.get(summary["best_iteration"], math.nan), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("learners", nargs="+", metavar="NAME=JSON", help="a learner's name and its changes")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    specs = {}
    for item in args.learners:
        name, _, changes = item.partition("=")
        try:
            specs[name] = json.loads(changes or "{}")
        except json.JSONDecodeError as exc:
            sys.exit(f"{name}: the changes are not JSON ({exc})")
    with tempfile.TemporaryDirectory() as logs, ProcessPoolExecutor(args.jobs) as pool:
        futures = {name: pool.submit(curve, name, changes, args.iterations, logs) for name, changes in specs.items()}
        results = {name: future.result() for name, future in futures.items()}
    steps = sorted({step for values, _, _ in results.values() for step in values})
    print("learner | changes | " + " | ".join(str(s) for s in steps) + " | best | seconds")
    for name, (values, best, seconds) in results.items():
        cells = " | ".join(f"{values[s]:.4f}" if s in values else "" for s in steps)
        print(f"{name} | {json.dumps(specs[name])} | {cells} | {best:.4f} | {seconds:.0f}")


if __name__ == "__main__":
    main()
