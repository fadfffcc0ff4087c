"""The pretrained baseline's own test-time fine-tuning: its SGD rate and steps, chosen on meta_val by a grid.

A pretrained network fine-tuned with another learner's inner rate is a strawman (Meta-SGD's rate is only
the starting value of its learned rates). The grid is ``train.finetune``: ``lr_points`` log-spaced rates
and 1 to ``max_steps`` steps for each fine-tuning rule; one adaptation trajectory per (rule, rate) scores every
step count at once, on meta_val only, by the family's score (regression: the mean grid MSE; classification:
the error rate). The (rule, rate) arms are raced by successive halving over meta_val episodes, since scoring
every arm on every episode cost more than training the tuned learner on 28x28 images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from metahpo.learners.meta_learner import MetaLearner
from metahpo.params import FinetuneParams

# score(learner, max_steps, episodes) -> per-episode scores [max_steps + 1, episodes], lower is better
Score = Callable[[MetaLearner, int], np.ndarray]


def finetuning_rates(finetune: FinetuneParams) -> list[float]:
    """The rates of the grid: ``lr_points`` log-spaced values from ``lr[0]`` to ``lr[1]``."""
    return [float(r) for r in np.geomspace(*finetune.lr, finetune.lr_points)]


def with_rate(learner: MetaLearner, rate: float, device: torch.device) -> MetaLearner:
    """A copy of ``learner`` (same weights) whose plain SGD inner rule uses ``rate`` at every step."""
    config = dataclasses.replace(learner.config, inner_lr=rate, extra_steps="plain")
    copy = MetaLearner(config, torch.Generator().manual_seed(0), device)
    copy.load_state_dict(learner.state_dict())
    return copy


def halving_rungs(arms: int, episodes: int, eta: int) -> list[tuple[int, int]]:
    """``(arms kept, episodes scored)`` per rung of successive halving over the grid's arms.

    Each rung keeps the best ``1/eta`` of the arms of the one before, down to one; the last rung (the winner)
    scores all ``episodes``, and each rung before it ``eta`` times fewer. ``eta`` 1: one rung, the full grid.
    With 2 rules x 13 rates and ``eta`` 3, that is 26, 9, 3 and 1 arms on 1/27, 1/9, 1/3 and all of the
    episodes: 12 % of the adaptations of the full grid.
    """
    kept = [arms]
    while eta > 1 and kept[-1] > 1:
        kept.append(math.ceil(kept[-1] / eta))
    last = len(kept) - 1
    return [(n, max(1, math.ceil(episodes / eta ** (last - k)))) for k, n in enumerate(kept)]


def choose_finetuning(
    learners: dict[str, MetaLearner], finetune: FinetuneParams, score: Score, episodes: int, device: torch.device
) -> dict:
    """The fine-tuning rule, rate and steps with the lowest ``score`` on meta_val, and how every arm scored.

    ``learners`` maps each fine-tuning rule (which weights adapt) to the pretrained network with that rule.
    An arm is a (rule, rate); one trajectory per arm scores every step count at once. Arms are raced by
    successive halving (``finetune.eta``, :func:`halving_rungs`): every arm is scored on the first meta_val
    episodes, the best ``1/eta`` go on to ``eta`` times as many, until the winner is scored on all
    ``episodes`` (its steps are chosen there). Scores of an episode do not depend on the others, so a rung
    only adapts the episodes the arm has not seen yet. A rate that diverges on some episode scores infinity.
    Ties go to the earlier rule,
    then the smaller rate, then fewer steps, so the choice is deterministic.

    Returns ``{"algorithm", "inner_lr", "inner_steps", "val_score", "grid"}``; the grid holds the rates, the
    steps, per rule the ``[rates, steps]`` scores (``null`` where it diverged) and the episodes each arm was
    scored on.
    """
    rates, steps = finetuning_rates(finetune), list(range(1, finetune.max_steps + 1))
    arms = [(rule, i) for rule in learners for i in range(len(rates))]
    sums = {arm: np.zeros(len(steps)) for arm in arms}
    seen = dict.fromkeys(arms, 0)
    alive = list(arms)
    for kept, upto in halving_rungs(len(arms), episodes, finetune.eta):
        alive = sorted(alive, key=lambda arm: (_best(sums[arm], seen[arm]), arms.index(arm)))[:kept]
        for arm in alive:
            if seen[arm] < upto:
                rule, i = arm
                part = slice(seen[arm], upto)
                errors = score(with_rate(learners[rule], rates[i], device), steps[-1], part)[1:]
                sums[arm] += errors.sum(axis=1) if np.isfinite(errors).all() else np.inf
                seen[arm] = upto
        alive = sorted(alive, key=lambda arm: (_best(sums[arm], seen[arm]), arms.index(arm)))
    rule, i = alive[0]
    mean = sums[alive[0]] / seen[alive[0]]
    j = int(np.argmin(mean))
    table = {r: [[_mean(sums[(r, k)], seen[(r, k)], s) for s in range(len(steps))] for k in range(len(rates))]
             for r in learners}  # fmt: skip
    return {
        "algorithm": rule,
        "inner_lr": rates[i],
        "inner_steps": steps[j],
        "val_score": float(mean[j]),
        "grid": {
            "inner_lr": rates,
            "inner_steps": steps,
            "val_score": table,
            "episodes": {r: [seen[(r, k)] for k in range(len(rates))] for r in learners},
        },
    }


def _best(sums: np.ndarray, seen: int) -> float:
    """An arm's best mean score over its steps so far (infinity before it is scored or once it diverged)."""
    return float(np.min(sums) / seen) if seen and np.isfinite(sums).all() else np.inf


def _mean(sums: np.ndarray, seen: int, step: int) -> float | None:
    value = sums[step] / seen if seen else np.inf
    return float(value) if np.isfinite(value) else None
