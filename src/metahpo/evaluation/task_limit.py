"""Reference rows that are no learner: the task's own limit (sinusoid) and its floor (classification).

Sinusoid regression: the true model family fitted to the K support points.

Not a learner: it knows the tasks are ``y = A * sin(x - phase)`` with ``A`` and ``phase`` in their
ranges, and fits those two numbers to each task's K support points by least squares. A learner that
adapts on the same K points cannot do better on average than this fit, except by luck; the gap
between the tuned learner and this row is what better meta-learning could still win.

The fit, vectorised over tasks in float64: for every phase of a dense grid over the range the best
amplitude is closed-form (the projection clipped to the range: the exact constrained minimum of a
quadratic in one variable); the best grid phase is then refined by golden-section search on that
profile within one grid step either side.

Classification has no true model family to fit; the nearest equivalent is a floor rather than a limit:
each query image goes to the class whose K support images have the nearest mean in raw pixels
(a prototypical network with no network). A learner that does not beat it has learned no useful
features.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metahpo.learners.algorithms.protonet import prototype_logits
from metahpo.learners.meta_learner import task_accuracy
from metahpo.params import TaskParams
from metahpo.tasks.episodes import episode_arrays, select_episodes

PHASE_GRID = 1024  # phases of the dense grid; refinement makes the result exact far below its spacing
REFINE_STEPS = 60  # golden-section steps: the bracket shrinks by 0.618^60, about 3e-13
INV_PHI = (math.sqrt(5) - 1) / 2


def _sums(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-task sums that give the squared error of any sinusoid without another pass over the points."""
    sin, cos = np.sin(x), np.cos(x)
    return {"yy": (y * y).sum(1), "ys": (y * sin).sum(1), "yc": (y * cos).sum(1),
            "ss": (sin * sin).sum(1), "sc": (sin * cos).sum(1), "cc": (cos * cos).sum(1)}  # fmt: skip


def _profile(sums: dict, phase: np.ndarray, amplitude_range) -> tuple[np.ndarray, np.ndarray]:
    """Best amplitude and squared error ``[tasks, phases]`` for each task and phase ``[tasks, phases]``.

    ``sin(x - phase) = sin(x) cos(phase) - cos(x) sin(phase)``, so its products with ``y`` and with
    itself are combinations of the per-task sums.
    """
    s = {k: v[:, None] for k, v in sums.items()}
    cp, sp = np.cos(phase), np.sin(phase)
    fit = cp * s["ys"] - sp * s["yc"]
    norm = cp * cp * s["ss"] - 2 * cp * sp * s["sc"] + sp * sp * s["cc"]
    amplitude = np.clip(fit / np.maximum(norm, 1e-300), *amplitude_range)
    return amplitude, s["yy"] - 2 * amplitude * fit + amplitude * amplitude * norm


def fit_sinusoids(x: np.ndarray, y: np.ndarray, amplitude_range, phase_range) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``(amplitude, phase)`` per task of ``A * sin(x - phase)`` to points ``x, y`` ``[tasks, K]``.

    ``A`` and ``phase`` stay inside their ranges; ties between equally good phases (K = 1 fits many
    sinusoids exactly) go to the smallest phase of the grid, so the fit is deterministic.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    low, high = phase_range
    grid = np.linspace(low, high, PHASE_GRID)
    sums = _sums(x, y)
    _, error = _profile(sums, np.broadcast_to(grid, (len(x), PHASE_GRID)), amplitude_range)
    best = grid[error.argmin(axis=1)]
    step = grid[1] - grid[0]
    a, b = np.maximum(best - step, low), np.minimum(best + step, high)
    for _ in range(REFINE_STEPS):
        c, d = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
        _, error = _profile(sums, np.stack([c, d], axis=1), amplitude_range)
        left = error[:, 0] <= error[:, 1]
        a, b = np.where(left, a, c), np.where(left, d, b)
    candidates = np.stack([best, (a + b) / 2], axis=1)  # the refinement never ends worse than the grid
    amplitude, error = _profile(sums, candidates, amplitude_range)
    pick = error.argmin(axis=1)[:, None]
    return np.take_along_axis(amplitude, pick, 1)[:, 0], np.take_along_axis(candidates, pick, 1)[:, 0]


def limit_errors(split: dict[str, np.ndarray], shots: int, amplitude_range, phase_range) -> dict[str, np.ndarray]:
    """Per-task MSE ``[tasks]`` on the ``query`` points and on the ``grid`` of the fit to the first ``shots`` points."""
    support_x, support_y = split["support_x"][:, :shots, 0], split["support_y"][:, :shots, 0]
    amplitude, phase = fit_sinusoids(support_x, support_y, amplitude_range, phase_range)
    out = {}
    for kind, x, y in (("query", split["query_x"], split["query_y"]), ("grid", split["grid_x"], split["grid_y"])):
        x = np.broadcast_to(np.asarray(x, np.float64), y.shape)[..., 0]
        prediction = amplitude[:, None] * np.sin(x - phase[:, None])
        out[kind] = ((prediction - y[..., 0].astype(np.float64)) ** 2).mean(axis=1)
    return out


def ranges(tasks: TaskParams, split: str) -> tuple[list[float], list[float]]:
    """The amplitude and phase ranges the tasks of ``split`` (``test`` or ``ood``) were drawn from."""
    source = tasks.ood if split == "ood" else tasks
    return source.amplitude, source.phase


def pixel_floor_accuracy(split: dict[str, np.ndarray], shots: int, chunk: int) -> np.ndarray:
    """Per-episode query accuracy ``[episodes]`` of the nearest class mean on raw pixels of ``shots`` images per class.

    Episodes are gathered ``chunk`` at a time, as the learners' evaluation does.
    """
    n, ways = split["support_index"].shape[:2]
    out = np.zeros(n)
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        support_x, support_y, query_x, query_y = map(
            torch.from_numpy, episode_arrays(select_episodes(split, part), shots)
        )
        logits = prototype_logits(support_x.flatten(2).double(), support_y, query_x.flatten(2).double(), ways)
        out[part] = task_accuracy(logits, query_y).numpy()
    return out
