"""Adaptation on held-out tasks: per-task MSE or accuracy after 0..S inner steps, and their summary."""

from __future__ import annotations

import math

import numpy as np
import torch

from metahpo.learners.meta_learner import MetaLearner, task_accuracy, task_cross_entropy, task_mse
from metahpo.tasks.episodes import episode_arrays, select_episodes

POINT_SETS = ("query", "grid")
Z_95 = 1.96
# A mean error this many times the error before adapting has blown up: it summarises nothing (a 6e24 mean).
DIVERGED_FACTOR = 100.0


def _targets(split: dict[str, np.ndarray], points: str, device: torch.device):
    if points == "grid":
        n = split["grid_y"].shape[0]
        x = np.broadcast_to(split["grid_x"], (n, *split["grid_x"].shape))
        return torch.from_numpy(np.ascontiguousarray(x)).to(device), torch.from_numpy(split["grid_y"]).to(device)
    return torch.from_numpy(split["query_x"]).to(device), torch.from_numpy(split["query_y"]).to(device)


def adaptation_errors(
    learner: MetaLearner,
    split: dict[str, np.ndarray],
    max_steps: int,
    chunk: int,
    device: torch.device,
    shots: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-task MSE ``[max_steps + 1, tasks]`` per set of points (query, grid), adapting with the learner's own rule.

    The learner adapts on the first ``shots`` support points of each task (all of them by default).
    """
    support_x = torch.from_numpy(np.ascontiguousarray(split["support_x"][:, :shots])).to(device)
    support_y = torch.from_numpy(np.ascontiguousarray(split["support_y"][:, :shots])).to(device)
    targets = {points: _targets(split, points, device) for points in POINT_SETS}
    n = support_x.shape[0]
    out = {points: np.zeros((max_steps + 1, n)) for points in POINT_SETS}
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        trajectory = learner.trajectory(support_x[part], support_y[part], max_steps)
        for step, fast in enumerate(trajectory):
            with torch.no_grad():
                for points, (x, y) in targets.items():
                    outputs = learner.query_outputs(fast, support_x[part], support_y[part], x[part])
                    out[points][step, part] = task_mse(outputs, y[part]).double().cpu().numpy()
    return out


def classification_scores(
    learner: MetaLearner, split: dict[str, np.ndarray], max_steps: int, chunk: int, device: torch.device, shots: int
) -> dict[str, np.ndarray]:
    """Per-episode query ``accuracy`` and ``loss`` (cross-entropy) ``[max_steps + 1, episodes]``.

    Each stored episode adapts on the first ``shots`` support images of each class; the images of
    ``chunk`` episodes at a time are gathered and moved to the device.
    """
    n = len(split["support_index"])
    out = {"accuracy": np.zeros((max_steps + 1, n)), "loss": np.zeros((max_steps + 1, n))}
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        arrays = episode_arrays(select_episodes(split, part), shots)
        support_x, support_y, query_x, query_y = (torch.from_numpy(a).to(device) for a in arrays)
        for step, fast in enumerate(learner.trajectory(support_x, support_y, max_steps)):
            with torch.no_grad():
                logits = learner.query_outputs(fast, support_x, support_y, query_x)
                out["accuracy"][step, part] = task_accuracy(logits, query_y).cpu().numpy()
                out["loss"][step, part] = task_cross_entropy(logits, query_y).double().cpu().numpy()
    return out


def validation_mse(learner: MetaLearner, split: dict, steps: int, shots: int, device: torch.device) -> float:
    """Mean grid MSE over every task of ``split`` after ``steps`` adaptation steps on ``shots`` points."""
    errors = adaptation_errors(learner, split, steps, len(split["support_x"]), device, shots)
    return float(errors["grid"][steps].mean())


def summarize_accuracy(accuracy: np.ndarray) -> dict[str, float]:
    """Mean accuracy over episodes and its 95% confidence half-width (1.96·std/√n)."""
    std = float(accuracy.std(ddof=1)) if accuracy.size > 1 else 0.0
    return {"accuracy": float(accuracy.mean()), "ci95": Z_95 * std / math.sqrt(accuracy.size)}


def summarize(errors: np.ndarray) -> dict[str, float | None]:
    """Mean, standard deviation and 95% confidence half-width (1.96·std/√n) of a sample.

    A sample with a NaN or infinite error (adaptation diverged on some task) has no meaningful
    statistics: every value is ``None`` (``null`` in JSON), never a NaN that breaks JSON readers.
    """
    n = errors.size
    if not np.isfinite(errors).all():
        return {"mse": None, "std": None, "ci95": None}
    std = float(errors.std(ddof=1)) if n > 1 else 0.0
    return {"mse": float(errors.mean()), "std": std, "ci95": Z_95 * std / math.sqrt(n)}


def trained_steps(learner: MetaLearner) -> int:
    """Inner steps a learner was meta-trained with (none for the prototypical network and the CNP)."""
    return learner.config.inner_steps if learner.adapted else 0
