"""Meta-training loop: sample task batches from the meta-train pool and take outer Adam steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from metahpo.config import is_classification
from metahpo.episodes import EpisodePool
from metahpo.errors import DivergenceError
from metahpo.learners import LearnerConfig, MetaLearner


@dataclass(frozen=True)
class TaskPool:
    """Meta-train tasks on the device: inputs and targets ``[tasks, points, 1]``."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_split(cls, split: dict[str, np.ndarray], device: torch.device) -> TaskPool:
        """Move a loaded ``meta_train`` split to ``device``."""
        return cls(torch.from_numpy(split["x"]).to(device), torch.from_numpy(split["y"]).to(device))

    def sample(self, batch: int, shots: int, query: int, generator: torch.Generator):
        """Draw ``batch`` tasks and, without replacement, ``shots`` support and ``query`` query points of each."""
        n_tasks, n_points, _ = self.x.shape
        tasks = torch.randint(n_tasks, (batch,), generator=generator)
        points = torch.rand(batch, n_points, generator=generator).argsort(dim=1)[:, : shots + query]
        tasks, points = tasks.to(self.x.device), points.to(self.x.device).unsqueeze(-1)
        x = torch.gather(self.x[tasks], 1, points)
        y = torch.gather(self.y[tasks], 1, points)
        return x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:]


def make_pool(split: dict[str, np.ndarray], tasks: dict, device: torch.device) -> TaskPool | EpisodePool:
    """The meta-train sampler of a loaded ``meta_train`` split: regression tasks or N-way episodes."""
    if is_classification(tasks):
        return EpisodePool.from_split(split, tasks["ways"], device)
    return TaskPool.from_split(split, device)


@dataclass(frozen=True)
class TrainSettings:
    """How long and how fast to meta-train."""

    iterations: int
    meta_batch_size: int
    outer_lr: float
    outer_schedule: str
    shots: int
    query: int
    adapt_steps: int | None = None  # inner steps during meta-training; None: the learner's own (0: plain regression)


def build_learner(config: LearnerConfig, seed: int, device: torch.device) -> MetaLearner:
    """A freshly initialised learner; the same seed gives the same initial weights."""
    return MetaLearner(config, torch.Generator().manual_seed(seed), device)


def make_optimizer(learner: MetaLearner, lr: float) -> torch.optim.Adam:
    """The outer optimiser: Adam, fused into one kernel per step (same update, less overhead)."""
    return torch.optim.Adam(learner.parameters(), lr=lr, fused=True)


def meta_train(
    learner: MetaLearner,
    pool: TaskPool,
    settings: TrainSettings,
    seed: int,
    log_every: int = 0,
    on_log: Callable[[int, float], None] | None = None,
    progress: str | None = None,
) -> None:
    """Meta-train ``learner`` in place with Adam on the outer loss (constant or cosine-annealed rate).

    Every ``log_every`` iterations ``on_log(step, mean loss since the last call)`` is called. Raises
    :class:`DivergenceError` as soon as a loss or a meta-parameter is found to be NaN or infinite,
    so divergent weights are never handed back as a result.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(learner, settings.outer_lr)
    schedule = None
    if settings.outer_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.iterations)
    check_every = log_every or max(1, settings.iterations // 20)
    running = torch.zeros((), device=next(learner.parameters()).device)
    since = 0
    bar = tqdm(range(1, settings.iterations + 1), desc=progress, disable=progress is None, mininterval=1.0, leave=False)
    for step in bar:
        batch = pool.sample(settings.meta_batch_size, settings.shots, settings.query, generator)
        loss = learner.meta_loss(*batch, steps=settings.adapt_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        running += loss.detach()
        since += 1
        if step % check_every == 0 or step == settings.iterations:
            mean = (running / since).item()
            if not math.isfinite(mean):
                raise DivergenceError(
                    f"meta-loss is {mean} at iteration {step} (try a smaller inner or outer learning rate)"
                )
            if on_log is not None and log_every:
                on_log(step, mean)
            bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
            running.zero_()
            since = 0
    learner.check_finite()
