"""Train single MAML-family settings with the final-training code and score them with the evaluate code.

Run from a folder holding ``params.yaml`` and the generated ``data/tasks`` (``dvc repro generate``)::

    python benchmarks/maml_settings.py '{"algorithm": "metasgd", "hidden": 84, ...}' --iterations 40000

The setting is applied over params.yaml's untuned one (``meta``, ``model``), trained by
``training.train_learner`` for ``--iterations`` (meta_val every ``train.log_every``, best weights kept), and
evaluated by ``evaluation.regression.learner_results`` on meta_test and meta_ood. One JSON line is printed:
grid MSE ± CI after one step at each K of ``tasks.eval_shots``, the K = ``tasks.shots`` grid MSE after
every step up to ``evaluate.max_steps`` (with ``--extra-steps plain safeguarded``, also the curve under each rule
past the trained steps, ``meta.extra_steps``), the seconds per iteration (contended if the machine is shared:
compare ratios of runs made together, not the seconds) and the best meta_val.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace

from metahpo import paths
from metahpo.evaluation.regression import learner_results, load_splits
from metahpo.learners import EXTRA_STEPS
from metahpo.learners.family import family_of
from metahpo.learners.settings import apply_point
from metahpo.learners.training import train_learner
from metahpo.params import load_params
from metahpo.runtime import setup
from metahpo.tasks.storage import load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setting", help="JSON mapping of tunable keys (applied over params.yaml's untuned setting)")
    parser.add_argument("--iterations", type=int, required=True, help="meta-iterations of the training")
    parser.add_argument(
        "--extra-steps", nargs="+", choices=EXTRA_STEPS, default=None,
        help="evaluate the trained learner with each of these rules past its trained steps (meta.extra_steps); "
        "the K-step curve of each is printed as k_steps_<rule>",
    )  # fmt: skip
    args = parser.parse_args()
    params = load_params()
    params = params.replace("train", iterations=args.iterations)
    point = json.loads(args.setting)
    setting = apply_point(params, point)
    device = setup(params)
    family = family_of(params)
    pool = family.make_pool(load_split(paths.TASKS, "meta_train"), device)
    val = load_split(paths.TASKS, "meta_val")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as logs:
        learner, summary = train_learner("setting", setting, params, pool, val, device, logs=logs)
    seconds = time.perf_counter() - start
    steps = list(range(params.evaluate.max_steps + 1))
    shots = params.tasks.shots
    curves = {}
    for rule in args.extra_steps or []:
        learner.config = replace(learner.config, extra_steps=rule)
        other, _ = learner_results(learner, load_splits(), params, steps, device)
        curves[f"k_steps_{rule}"] = [other["test"]["grid"][f"k{shots}"][f"step{s}"]["mse"] for s in steps]
    learner.config = replace(learner.config, extra_steps=setting["extra_steps"])
    entry, _ = learner_results(learner, load_splits(), params, steps, device)
    grid = entry["test"]["grid"]
    result = {
        "setting": point,
        "iterations": args.iterations,
        **summary,
        "seconds_per_iteration": seconds / max(summary["trained_iterations"], 1),
        "kshot_step1": {f"k{k}": grid[f"k{k}"]["step1"] for k in params.tasks.eval_shots},
        "k_steps": [grid[f"k{shots}"][f"step{s}"]["mse"] for s in steps],
        "ood_step1": entry["ood"]["grid"][f"k{shots}"]["step1"]["mse"],
        **curves,
    }
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
