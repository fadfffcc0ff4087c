"""Time of the classification evaluation by ``evaluate.task_chunk``, and the conv block's ReLU/pool order.

Usage: ``python benchmarks/eval_chunk.py [--rounds 2] [--steps 1]``.
Scores the untuned digits learner of the README (MAML, 4 blocks of 32 channels, random initial
weights) on 600 stored 5-way 1-shot digits episodes with 10 query images per class, as the evaluate
stage does, with ``--steps`` adaptation steps, adapting 600 (the earlier default, the peer), 100, 25
and 10 episodes at once. A second table times each block's ReLU before max-pooling (the earlier
order, the peer) against pooling first (metahpo's order; both orders give the same values and
gradients) for a meta-step and for the evaluation. All in this process, one thread, interleaved;
the best of ``--rounds`` is kept.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

import metahpo.search  # noqa: F401  (registers the learners' and the search's names with the params schema)
from metahpo.learners import conv
from metahpo.learners.adaptation import classification_scores
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.params import Params, TaskParams, read_params_file
from metahpo.tasks.episodes import episode_arrays, generate_episode_splits, select_episodes
from metahpo.tasks.images import digits_classes

CHUNKS = (600, 100, 25, 10)
ROOT = Path(__file__).resolve().parents[1]


def digits_tasks() -> TaskParams:
    """params.yaml's tasks as 5-way 1-shot digits with 600 stored meta_test episodes."""
    raw = read_params_file(ROOT / "params.yaml")
    raw["tasks"].update(family="digits", shots=1, eval_shots=[1])
    raw["tasks"]["splits"].update(meta_val=10, meta_test=600)
    return Params.from_dict(raw).tasks


def relu_then_pool_features(weights, x):
    """``conv.conv_features`` with each block's ReLU before its max-pooling (the earlier order)."""
    tasks, points = x.shape[:2]
    h = x.transpose(0, 1).reshape(points, tasks, *x.shape[2:])
    for i in range(sum(1 for name in weights if name.startswith("conv"))):
        kernel = weights[f"conv{i}"]
        h = F.conv2d(h, kernel.reshape(-1, *kernel.shape[2:]), padding=1, groups=tasks)
        h = F.batch_norm(
            h, None, None, weights[f"scale{i}"].reshape(-1), weights[f"shift{i}"].reshape(-1), training=True
        )
        h = torch.relu(h)
        if min(h.shape[-2:]) > 1:
            h = F.max_pool2d(h, 2)
    return h.reshape(points, tasks, -1).transpose(0, 1)


def learner() -> MetaLearner:
    """The untuned digits learner with its (seeded) initial weights."""
    config = LearnerConfig("maml", 32, 4, 0.4, 1, "conv", (8, 8), 5, "cross_entropy")
    return MetaLearner(config, torch.Generator().manual_seed(0))


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def meta_step(net: MetaLearner, split: dict) -> None:
    """One meta-step (meta-loss and gradient) on 25 stored episodes, 2 query images per class."""
    support_x, support_y, query_x, query_y = episode_arrays(select_episodes(split, slice(0, 25)), 1)
    keep = [c * 10 + q for c in range(5) for q in range(2)]
    batch = [torch.from_numpy(a) for a in (support_x, support_y, query_x[:, keep], query_y[:, keep])]
    torch.autograd.grad(net.meta_loss(*batch), list(net.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    split = generate_episode_splits(digits_tasks(), 0, digits_classes([0, 90, 180, 270]), "digits")[0]["meta_test"]
    net, cpu = learner(), torch.device("cpu")
    evaluation = lambda chunk: lambda: classification_scores(net, split, args.steps, chunk, cpu, 1)  # noqa: E731
    orders = {"relu, then pool": relu_then_pool_features, "pool, then relu": conv.conv_features}
    chunk_best: dict = {}
    order_best: dict = {}
    for _ in range(args.rounds):
        for chunk in CHUNKS:
            chunk_best[chunk] = min(seconds(evaluation(chunk)), chunk_best.get(chunk, float("inf")))
        for order, features in orders.items():
            with mock.patch.object(conv, "conv_features", features):
                meta_step(net, split)  # warm-up
                step = min(seconds(lambda: meta_step(net, split)) for _ in range(5))
                whole = seconds(evaluation(25))
            previous = order_best.get(order, (float("inf"), float("inf")))
            order_best[order] = (min(step, previous[0]), min(whole, previous[1]))
    print(f"evaluation of 600 digits episodes (5-way 1-shot, 10 queries per class, {args.steps} step(s)), "
          f"MAML 4x32 conv, 1 thread, best of {args.rounds} rounds")  # fmt: skip
    print("| task_chunk | seconds | speed-up vs 600 |")
    print("|---|---|---|")
    for chunk in CHUNKS:
        print(f"| {chunk} | {chunk_best[chunk]:.1f} | {chunk_best[600] / chunk_best[chunk]:.2f}x |")
    print()
    print("| block order | ms per meta-step (25 episodes, 2 queries per class) | evaluation s (task_chunk 25) |")
    print("|---|---|---|")
    peer = order_best["relu, then pool"]
    for order, (step, whole) in order_best.items():
        print(f"| {order} | {1000 * step:.0f} ({peer[0] / step:.2f}x) | {whole:.1f} ({peer[1] / whole:.2f}x) |")


if __name__ == "__main__":
    main()
