"""How far one digits setting's accuracy moves with the training seed alone (why ``search.repeats``).

Usage: ``python benchmarks/seed_noise.py [--seeds 3] [--iterations 1000] [--workers 2]``.
Builds the digits 5-way 1-shot tasks of the README's digits command in memory and trains, like the
versions before ``meta.query`` did, on 10 query images per class; it trains three settings
(the untuned baseline; the Meta-SGD setting a single-seed search picked; the MAML setting a search
with two seeds per trial picked) once per seed, and prints per seed the search objective (meta_val
cross-entropy after one step) and the meta_val and meta_test accuracy after one step, then the mean
and range over seeds.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import metahpo.search  # noqa: F401  (registers the learners' and the search's names with the params schema)
from metahpo.learners.adaptation import classification_scores
from metahpo.learners.family import family_of
from metahpo.learners.metatrain import build_learner, meta_train
from metahpo.learners.settings import apply_point, learner_config, train_settings
from metahpo.params import Params, read_params_file
from metahpo.tasks.episodes import generate_episode_splits
from metahpo.tasks.images import load_classes

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "untuned MAML 32 ch.": {},
    "Meta-SGD 16 ch.": {
        "algorithm": "metasgd",
        "hidden": 16,
        "inner_lr": 0.5,
        "outer_lr": 0.03,
        "outer_schedule": "cosine",
    },
    "MAML 35 ch., Adam 0.0015": {"hidden": 35, "inner_lr": 0.4083301548840042, "outer_lr": 0.0014956957201498152},
}


def digits_params() -> Params:
    """params.yaml with the README's digits command applied (10 training queries per class, the default)."""
    params = copy.deepcopy(read_params_file(ROOT / "params.yaml"))
    params["tasks"].update(family="digits", shots=1)
    params["model"].update(arch="conv", layers=4, hidden=32)
    params["meta"]["inner_lr"] = 0.4
    params["search"]["space"]["algorithm"]["values"] = ["maml", "fomaml", "metasgd", "anil"]  # the CNP needs an MLP
    params["device"] = "cpu"
    return Params.from_dict(params)


def train_and_score(job: tuple[str, int, int]) -> tuple[str, int, dict]:
    """Train one setting with one seed; score it on meta_val and meta_test after one step."""
    name, seed, iterations = job
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    params, device = digits_params(), torch.device("cpu")
    splits, _ = generate_episode_splits(params.tasks, params.seed, load_classes(params.tasks), "digits")
    setting = apply_point(params, SETTINGS[name])
    learner = build_learner(learner_config(setting, params), seed, device)
    pool = family_of(params).make_pool(splits["meta_train"], device)
    meta_train(learner, pool, train_settings(setting, params, iterations), seed)
    scores = {}
    for split in ("meta_val", "meta_test"):
        result = classification_scores(learner, splits[split], 1, len(splits[split]["support_index"]), device, 1)
        scores[split] = {"loss": float(result["loss"][1].mean()), "accuracy": 100 * float(result["accuracy"][1].mean())}
    return name, seed, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [(name, seed, args.iterations) for name in SETTINGS for seed in range(args.seeds)]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(train_and_score, jobs))
    print(f"digits 5-way 1-shot, {args.iterations} training iterations, seeds 0..{args.seeds - 1}, 1 thread each")
    print("| setting | seed | meta_val cross-entropy | meta_val accuracy | meta_test accuracy |")
    print("|---|---|---|---|---|")
    for name, seed, s in results:
        val, test = s["meta_val"], s["meta_test"]
        print(f"| {name} | {seed} | {val['loss']:.3f} | {val['accuracy']:.1f} % | {test['accuracy']:.1f} % |")
    print()
    print("| setting | meta_val cross-entropy, mean (range) | meta_test accuracy, mean (range) |")
    print("|---|---|---|")
    for name in SETTINGS:
        losses = [s["meta_val"]["loss"] for n, _, s in results if n == name]
        accs = [s["meta_test"]["accuracy"] for n, _, s in results if n == name]
        print(
            f"| {name} | {statistics.fmean(losses):.3f} ({min(losses):.3f} to {max(losses):.3f}) "
            f"| {statistics.fmean(accs):.1f} % ({min(accs):.1f} to {max(accs):.1f}) |"
        )
    print(f"\nwall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
