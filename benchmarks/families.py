"""The three families of meta-learners side by side, and a search that may choose among them.

``compare``: on the sinusoid (K = 10, 1-40-40-1 MLP, the MAML paper's settings) and on digits (5-way
1-shot, the same MLP on the flattened 8x8 images, inner rate 0.4), each learner trains for the same
iterations at the params.yaml defaults otherwise (MAML and the learned optimizer one inner step; the
CNP with its 32-value representation; on digits also a prototypical network) and is scored on
meta_test after 0, 1 and 10 adaptation steps (grid MSE, or query accuracy; mean ± 95% CI).

``search``: one sinusoid search (GP, single fidelity) over the default space plus ``cnp`` and
``learned_optimizer`` and their own dimensions; prints the trial log and the best trial per algorithm.

Usage: ``python benchmarks/families.py compare|search [--iterations N] [--calls N]``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from search_common import benchmark_params, timed_search

import metahpo.search  # noqa: F401  (registers the learners' and the search's names with the params schema)
from metahpo.learners.adaptation import adaptation_errors, classification_scores, summarize, summarize_accuracy
from metahpo.learners.family import family_of
from metahpo.learners.metatrain import build_learner, meta_train
from metahpo.learners.settings import apply_point, learner_config, train_settings
from metahpo.params import Params, read_params_file
from metahpo.tasks.episodes import generate_episode_splits
from metahpo.tasks.images import load_classes
from metahpo.tasks.sinusoid import generate_splits

ROOT = Path(__file__).resolve().parents[1]
STEPS = (0, 1, 10)
LEARNERS = {
    "sinusoid": ("maml", "learned_optimizer", "cnp"),
    "digits": ("maml", "learned_optimizer", "cnp", "protonet"),
}


def family_params(family: str) -> Params:
    params = copy.deepcopy(read_params_file(ROOT / "params.yaml"))
    params["device"] = "cpu"
    if family == "sinusoid":
        params["tasks"]["splits"].update(meta_train=5000, meta_val=100)
    else:
        params["tasks"].update(family="digits", shots=1)
        params["meta"]["inner_lr"] = 0.4
    return Params.from_dict(params)


def scores(learner, params: Params, split: dict) -> list[str]:
    """``mean ± ci95`` on ``split`` after each of :data:`STEPS` steps."""
    device, shots = torch.device("cpu"), params.tasks.shots
    if params.tasks.classification:
        accuracy = classification_scores(learner, split, max(STEPS), 50, device, shots)["accuracy"]
        return [
            f"{100 * s['accuracy']:.1f} ± {100 * s['ci95']:.1f} %"
            for s in map(summarize_accuracy, accuracy[list(STEPS)])
        ]
    grid = adaptation_errors(learner, split, max(STEPS), 50, device, shots)["grid"]
    return [
        f"{s['mse']:.3f} ± {s['ci95']:.3f}" if s["mse"] is not None else "diverged"
        for s in map(summarize, grid[list(STEPS)])
    ]


def compare(iterations: int) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for family, algorithms in LEARNERS.items():
        params = family_params(family)
        if family == "sinusoid":
            splits = generate_splits(params.tasks, params.seed)
        else:
            splits, _ = generate_episode_splits(params.tasks, params.seed, load_classes(params.tasks), "digits")
        pool = family_of(params).make_pool(splits["meta_train"], torch.device("cpu"))
        metric = "accuracy" if params.tasks.classification else "grid MSE"
        print(f"\n{family}, {iterations} iterations, meta_test {metric} after " + ", ".join(map(str, STEPS)) + " steps")
        print("| learner | trained steps | " + " | ".join(f"{s} steps" for s in STEPS) + " | train seconds |")
        print("|---" * (3 + len(STEPS)) + "|")
        for algorithm in algorithms:
            setting = apply_point(params, {"algorithm": algorithm})
            learner = build_learner(learner_config(setting, params), params.seed, torch.device("cpu"))
            start = time.perf_counter()
            meta_train(learner, pool, train_settings(setting, params, iterations), params.seed)
            seconds = time.perf_counter() - start
            trained = 0 if algorithm in ("cnp", "protonet") else setting["inner_steps"]
            cells = scores(learner, params, splits["meta_test"])
            print(f"| {algorithm} | {trained} | " + " | ".join(cells) + f" | {seconds:.0f} |", flush=True)


def search(iterations: int, calls: int) -> None:
    raw = benchmark_params(iterations, calls, workers=1)
    raw["search"]["space"]["algorithm"]["values"] += ["cnp", "learned_optimizer"]
    raw["search"]["space"]["representation"] = {"type": "integer", "low": 8, "high": 128, "prior": "log-uniform"}
    raw["search"]["space"]["rule_hidden"] = {"type": "integer", "low": 4, "high": 40, "prior": "log-uniform"}
    seconds, best, rows = timed_search(raw)
    names = list(raw["search"]["space"])
    print(
        f"sinusoid, gp search, {calls} trials of {iterations} iterations, "
        f"meta_val grid MSE after 1 step, {seconds:.0f} s"
    )
    print("| trial | " + " | ".join(names) + " | objective | seconds |")
    print("|---" * (len(names) + 3) + "|")
    for t, row in enumerate(rows):
        values = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in (row["point"][n] for n in names)]
        print(f"| {t} | " + " | ".join(values) + f" | {row['objective']:.3f} | {row['seconds']:.0f} |")
    print("\n| algorithm | trials | best objective | mean seconds per trial |")
    print("|---|---|---|---|")
    for algorithm in raw["search"]["space"]["algorithm"]["values"]:
        mine = [r for r in rows if r["point"]["algorithm"] == algorithm]
        if mine:
            best_value = min(r["objective"] for r in mine)
            mean_seconds = sum(r["seconds"] for r in mine) / len(mine)
            print(f"| {algorithm} | {len(mine)} | {best_value:.3f} | {mean_seconds:.0f} |")
    print(f"\nbest: trial {best['trial']}, {best['point']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("compare", "search"))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=16)
    args = parser.parse_args()
    if args.part == "compare":
        compare(args.iterations)
    else:
        search(args.iterations, args.calls)


if __name__ == "__main__":
    main()
