"""The pretrained baseline's own test-time fine-tuning: its SGD rate and steps, chosen on meta_val by a grid.

A pretrained network fine-tuned with another learner's inner rate is a strawman (Meta-SGD's rate is only
the starting value of its learned rates). The grid is ``train.finetune``: ``lr_points`` log-spaced rates
and 1 to ``max_steps`` steps; one adaptation trajectory per rate scores every step count at once, on
meta_val only, by the family's score (regression: the mean grid MSE; classification: the error rate).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from metahpo.learners.meta_learner import MetaLearner
from metahpo.params import FinetuneParams

# score(learner, max_steps) -> the mean score after 0..max_steps steps, lower is better
Score = Callable[[MetaLearner, int], np.ndarray]


def finetuning_rates(finetune: FinetuneParams) -> list[float]:
    """The rates of the grid: ``lr_points`` log-spaced values from ``lr[0]`` to ``lr[1]``."""
    return [float(r) for r in np.geomspace(*finetune.lr, finetune.lr_points)]


def with_rate(learner: MetaLearner, rate: float, device: torch.device) -> MetaLearner:
    """A copy of ``learner`` (same weights) whose plain SGD inner rule uses ``rate``."""
    config = dataclasses.replace(learner.config, inner_lr=rate)
    copy = MetaLearner(config, torch.Generator().manual_seed(0), device)
    copy.load_state_dict(learner.state_dict())
    return copy


def choose_finetuning(learner: MetaLearner, finetune: FinetuneParams, score: Score, device: torch.device) -> dict:
    """The rate and steps of the grid with the lowest ``score``, and every grid value.

    ``score`` measures a learner on meta_val. A rate that diverges on some task scores infinity. Ties go
    to the smaller rate, then fewer steps, so the choice is deterministic. Returns ``{"inner_lr",
    "inner_steps", "val_score", "grid"}``, the last with the rates, the steps and the ``[rates, steps]``
    table of scores (``null`` where it diverged).
    """
    rates, steps = finetuning_rates(finetune), list(range(1, finetune.max_steps + 1))
    table = np.empty((len(rates), len(steps)))
    for i, rate in enumerate(rates):
        table[i] = score(with_rate(learner, rate, device), steps[-1])[1:]
    table = np.where(np.isfinite(table), table, np.inf)
    i, j = np.unravel_index(np.argmin(table), table.shape)
    return {
        "inner_lr": rates[i],
        "inner_steps": steps[j],
        "val_score": float(table[i, j]),
        "grid": {
            "inner_lr": rates,
            "inner_steps": steps,
            "val_score": [[float(v) if np.isfinite(v) else None for v in row] for row in table],
        },
    }
