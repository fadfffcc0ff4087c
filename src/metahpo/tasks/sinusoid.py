"""Sinusoid regression, the MAML paper's setting: task splits, and meta-training batches drawn from them.

A task is ``y = A * sin(x - phase)`` with ``A ~ U[amplitude]``, ``phase ~ U[phase]`` and
``x ~ U[x_range]``.

* ``meta_train``: ``amplitude``, ``phase``, and a pool ``x``, ``y`` of ``train_points`` points per
  task, from which meta-training draws support and query sets.
* ``meta_val`` / ``meta_test`` / ``meta_ood``: fixed ``support_x/y`` (a pool of the largest of
  ``shots`` and ``eval_shots`` points; K-shot evaluation uses the first K), ``query_x/y`` (``query``
  random points) and ``grid_y`` on the shared ``grid_x`` (``grid_points`` evenly spaced inputs).
  ``meta_ood`` draws amplitudes and phases from ``tasks.ood`` (outside the training ranges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from metahpo.params import TaskParams

SPLITS = ("meta_train", "meta_val", "meta_test", "meta_ood")


@dataclass(frozen=True)
class SinusoidFamily:
    """The distribution of sinusoid tasks."""

    amplitude: tuple[float, float]
    phase: tuple[float, float]
    x_range: tuple[float, float]

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` amplitudes and phases."""
        amplitude = rng.uniform(*self.amplitude, size=n)
        phase = rng.uniform(*self.phase, size=n)
        return amplitude, phase

    def inputs(self, rng: np.random.Generator, n_tasks: int, n_points: int) -> np.ndarray:
        """Draw inputs uniformly in ``x_range``, shape ``[n_tasks, n_points, 1]``."""
        return rng.uniform(*self.x_range, size=(n_tasks, n_points, 1))

    def grid(self, n_points: int) -> np.ndarray:
        """Evenly spaced inputs over ``x_range``, shape ``[n_points, 1]``."""
        return np.linspace(*self.x_range, n_points).reshape(-1, 1)

    @staticmethod
    def targets(amplitude: np.ndarray, phase: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``A * sin(x - phase)`` for each task; ``x`` is ``[tasks, points, 1]`` or ``[points, 1]``."""
        return amplitude[:, None, None] * np.sin(x - phase[:, None, None])


def generate_splits(tasks: TaskParams, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Generate every split as float32 arrays; each split has its own child stream of ``seed``."""
    in_distribution = SinusoidFamily(tuple(tasks.amplitude), tuple(tasks.phase), tuple(tasks.x_range))
    shifted = SinusoidFamily(tuple(tasks.ood.amplitude), tuple(tasks.ood.phase), tuple(tasks.x_range))
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    grid_x = in_distribution.grid(tasks.grid_points)
    splits: dict[str, dict[str, np.ndarray]] = {}
    for name, stream in zip(SPLITS, streams):
        rng = np.random.default_rng(stream)
        n = tasks.splits[name]
        family = shifted if name == "meta_ood" else in_distribution
        amplitude, phase = family.sample(rng, n)
        if name == "meta_train":
            x = family.inputs(rng, n, tasks.train_points)
            arrays = {"x": x, "y": family.targets(amplitude, phase, x)}
        else:
            support_x = family.inputs(rng, n, tasks.support_pool)
            query_x = family.inputs(rng, n, tasks.query)
            arrays = {
                "support_x": support_x,
                "support_y": family.targets(amplitude, phase, support_x),
                "query_x": query_x,
                "query_y": family.targets(amplitude, phase, query_x),
                "grid_x": grid_x,
                "grid_y": family.targets(amplitude, phase, grid_x[None]),
            }
        arrays = {"amplitude": amplitude, "phase": phase, **arrays}
        splits[name] = {k: v.astype(np.float32) for k, v in arrays.items()}
    return splits


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


def sinusoid_pool(
    n_tasks: int,
    points: int,
    seed: int,
    amplitude: tuple[float, float] = (0.1, 5.0),
    phase: tuple[float, float] = (0.0, math.pi),
    x_range: tuple[float, float] = (-5.0, 5.0),
    device: torch.device | str = "cpu",
) -> TaskPool:
    """A pool of ``n_tasks`` sinusoid tasks of ``points`` points each (the MAML paper's ranges by default).

    For use outside the pipeline (a notebook, a test): the pipeline's ``meta_train`` split is drawn by
    :func:`generate_splits` from ``params.yaml``. The same seed gives the same tasks.

    Example:
        >>> pool = sinusoid_pool(n_tasks=100, points=20, seed=0)
        >>> tuple(pool.x.shape), tuple(pool.y.shape)
        ((100, 20, 1), (100, 20, 1))
        >>> support_x, support_y, query_x, query_y = pool.sample(4, 5, 10, torch.Generator().manual_seed(0))
        >>> tuple(support_x.shape), tuple(query_y.shape)
        ((4, 5, 1), (4, 10, 1))
    """
    family = SinusoidFamily(amplitude, phase, x_range)
    rng = np.random.default_rng(seed)
    amplitudes, phases = family.sample(rng, n_tasks)
    x = family.inputs(rng, n_tasks, points)
    y = family.targets(amplitudes, phases, x)
    return TaskPool.from_split({"x": x.astype(np.float32), "y": y.astype(np.float32)}, torch.device(device))
