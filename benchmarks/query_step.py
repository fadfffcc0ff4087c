"""Time of one conv-net meta-step by the number of query images per class (``meta.query``).

Usage: ``python benchmarks/query_step.py [--rounds 3] [--steps 6]``.
Builds the untuned digits learner of the README (MAML, 4 blocks of 32 channels, inner rate 0.4, one
second-order step, meta-batch 25, 5-way 1-shot) and times a meta-step (meta-loss and its gradient) on
random images of side 8 (digits) and 28 (Omniglot's size) with 10, 5, 2 and 1 query images per class.
The 10-query step, metahpo's default and what every meta-training used before ``meta.query``, is the
peer; all run in this process, interleaved, one thread, and the best of ``--rounds`` is kept.
"""

from __future__ import annotations

import argparse
import time

import torch

from metahpo.learners.meta_learner import LearnerConfig, MetaLearner

TASKS, WAYS, SHOTS = 25, 5, 1
QUERIES = (10, 5, 2, 1)


def batch(side: int, query: int):
    """Random 5-way 1-shot episodes ``(support_x, support_y, query_x, query_y)`` of ``side`` x ``side`` images."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(WAYS)
    support_y = labels.repeat_interleave(SHOTS).expand(TASKS, -1).contiguous()
    query_y = labels.repeat_interleave(query).expand(TASKS, -1).contiguous()
    support_x = torch.rand(TASKS, WAYS * SHOTS, side, side, generator=g)
    query_x = torch.rand(TASKS, WAYS * query, side, side, generator=g)
    return support_x, support_y, query_x, query_y


def seconds_per_step(side: int, query: int, steps: int) -> float:
    """Mean time of one meta-step (meta-loss and its gradient) over ``steps`` steps, after a warm-up."""
    config = LearnerConfig("maml", 32, 4, 0.4, 1, "conv", (side, side), WAYS, "cross_entropy")
    net, data = MetaLearner(config, torch.Generator().manual_seed(0)), batch(side, query)
    params = list(net.parameters())
    torch.autograd.grad(net.meta_loss(*data), params)
    start = time.perf_counter()
    for _ in range(steps):
        torch.autograd.grad(net.meta_loss(*data), params)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    best = {}
    for _ in range(args.rounds):
        for side in (8, 28):
            for query in QUERIES:
                took = seconds_per_step(side, query, args.steps if side == 8 else max(1, args.steps // 3))
                best[side, query] = min(took, best.get((side, query), float("inf")))
    print(f"conv-net meta-step (MAML, 4x32, 1 second-order step, meta-batch {TASKS}, {WAYS}-way {SHOTS}-shot), "
          f"1 thread, best of {args.rounds} rounds")  # fmt: skip
    print("| image side | query per class | ms per meta-step | speed-up vs 10 queries |")
    print("|---|---|---|---|")
    for side in (8, 28):
        for query in QUERIES:
            print(f"| {side} | {query} | {1000 * best[side, query]:.0f} | {best[side, 10] / best[side, query]:.2f}x |")


if __name__ == "__main__":
    main()
