"""How well the cost model ranks settings by what a meta-iteration really takes on this machine.

For a spread of settings (algorithm, width, depth, inner steps, meta-batch; the sinusoid MLP and the
4-block conv net on 28x28 5-way episodes), it measures the seconds of a meta-iteration (the median of
``--repeats`` timed runs of ``--iterations`` iterations after a warm-up, one torch thread) and prints
them beside :func:`metahpo.learners.cost.meta_iteration_macs`, with the Spearman rank correlation and
the seconds per million multiply-adds.

Usage: ``python benchmarks/cost_model.py [--iterations N] [--repeats R]``. Prints markdown.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from metahpo.learners.cost import meta_iteration_macs
from metahpo.learners.meta_learner import LearnerConfig
from metahpo.learners.metatrain import TrainSettings, build_learner, meta_train
from metahpo.tasks.episodes import EpisodePool
from metahpo.tasks.sinusoid import TaskPool

CPU = torch.device("cpu")
SIDE, WAYS = 28, 5


def sinusoid_pool(rng: np.random.Generator) -> TaskPool:
    """2,000 sinusoid tasks of 50 points."""
    amplitude, phase = rng.uniform(0.1, 5, (2000, 1, 1)), rng.uniform(0, np.pi, (2000, 1, 1))
    x = rng.uniform(-5, 5, (2000, 50, 1))
    split = {"x": x.astype(np.float32), "y": (amplitude * np.sin(x - phase)).astype(np.float32)}
    return TaskPool.from_split(split, CPU)


def image_pool(rng: np.random.Generator) -> EpisodePool:
    """20 classes of 20 random 28x28 images (the cost does not depend on what the pixels show)."""
    split = {"images": rng.random((400, SIDE, SIDE), dtype=np.float32), "labels": np.repeat(np.arange(20), 20)}
    return EpisodePool.from_split(split, WAYS, CPU)


def settings() -> list[dict]:
    """The spread: every MLP algorithm at three widths, two depths, two step counts and two meta-batches,
    then the conv net at three widths, two step counts, MAML, first-order MAML and ANIL."""
    spread = []
    for algorithm, hidden, layers, steps, batch in itertools.product(
        ("maml", "fomaml", "metasgd", "anil"), (20, 40, 100), (2, 3), (1, 3), (10, 25)
    ):
        spread.append({"arch": "mlp", "algorithm": algorithm, "hidden": hidden, "layers": layers,
                       "inner_steps": steps, "meta_batch_size": batch})  # fmt: skip
    for algorithm, hidden, steps in itertools.product(("maml", "fomaml", "anil"), (16, 32, 64), (1, 2)):
        spread.append({"arch": "conv", "algorithm": algorithm, "hidden": hidden, "layers": 4,
                       "inner_steps": steps, "meta_batch_size": 4})  # fmt: skip
    return spread


def seconds_per_iteration(setting: dict, pool, iterations: int, repeats: int) -> float:
    """Median wall seconds of one meta-iteration of ``setting`` on ``pool``.

    Each repeat times runs of ``iterations`` and ``2 x iterations`` and keeps the difference per
    iteration, so the fixed cost of a call (optimiser, schedule) cancels.
    """
    conv = setting["arch"] == "conv"
    shots, query = (1, 5) if conv else (10, 10)
    config = LearnerConfig(setting["algorithm"], setting["hidden"], setting["layers"], 0.01, setting["inner_steps"],
                           setting["arch"], (SIDE, SIDE) if conv else (1,), WAYS if conv else 1,
                           "cross_entropy" if conv else "mse")  # fmt: skip
    learner = build_learner(config, 0, CPU)

    def run(n: int, seed: int) -> float:
        start = time.perf_counter()
        meta_train(learner, pool, TrainSettings(n, setting["meta_batch_size"], 0.001, "constant", shots, query), seed)
        return time.perf_counter() - start

    run(2, 0)  # warm-up
    return statistics.median((run(2 * iterations, r) - run(iterations, r)) / iterations for r in range(repeats))


def estimate(setting: dict) -> int:
    """The cost model's multiply-adds for ``setting`` (support and query points per task as trained)."""
    if setting["arch"] == "conv":
        return meta_iteration_macs(setting, WAYS * 1, WAYS * 5, "conv", SIDE, WAYS)
    return meta_iteration_macs(setting, 10, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pools = {"mlp": sinusoid_pool(rng), "conv": image_pool(rng)}
    rows = []
    for setting in settings():
        iterations = max(2, args.iterations // 16) if setting["arch"] == "conv" else args.iterations
        seconds = seconds_per_iteration(setting, pools[setting["arch"]], iterations, args.repeats)
        rows.append((setting, estimate(setting), seconds))
    print("| arch | algorithm | width | depth | inner steps | meta-batch | est. M mult-adds | measured ms | ms per M |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, macs, seconds in rows:
        ms, mega = seconds * 1e3, macs / 1e6
        print(f"| {s['arch']} | {s['algorithm']} | {s['hidden']} | {s['layers']} | {s['inner_steps']} | "
              f"{s['meta_batch_size']} | {mega:,.2f} | {ms:,.2f} | {ms / mega:.3f} |")  # fmt: skip
    for arch in ("mlp", "conv", None):
        chosen = [(m, t) for s, m, t in rows if arch is None or s["arch"] == arch]
        rho = spearmanr([m for m, _ in chosen], [t for _, t in chosen]).statistic
        print(f"\nSpearman rank correlation, {arch or 'all'} ({len(chosen)} settings): {rho:.3f}")


if __name__ == "__main__":
    main()
