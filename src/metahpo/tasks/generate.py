"""DVC stage ``generate``: write every split of the task family under ``data/tasks``."""

from __future__ import annotations

import sys

from metahpo import paths
from metahpo.params import Params, TaskParams
from metahpo.tasks.episodes import generate_episode_splits
from metahpo.tasks.images import load_classes
from metahpo.tasks.sinusoid import generate_splits
from metahpo.tasks.storage import save_splits


def regression_splits(tasks: TaskParams, seed: int) -> tuple[dict, None, str]:
    """Every sinusoid split, no extra manifest entries, and a one-line summary."""
    splits = generate_splits(tasks, seed)
    return splits, None, ", ".join(f"{k}: {len(v['amplitude'])} tasks" for k, v in splits.items())


def classification_splits(tasks: TaskParams, seed: int) -> tuple[dict, dict, str]:
    """Class splits and stored episodes, the classes and sources of each split, and a one-line summary."""
    source = "digits" if tasks.family == "digits" else str(tasks.root)
    splits, described = generate_episode_splits(tasks, seed, load_classes(tasks), source)
    summary = ", ".join(
        f"{k}: {len(described[k]['classes'])} classes from {len(described[k]['sources'])} sources, "
        f"{len(v['images'])} images"
        for k, v in splits.items()
    )
    return splits, described, f"{summary}; {tasks.ways}-way episodes"


def generate_stage(params: Params, device=None) -> None:
    """Generate the family's splits from the seed and store them with their manifest."""
    generate = classification_splits if params.tasks.classification else regression_splits
    splits, described, summary = generate(params.tasks, params.seed)
    save_splits(paths.TASKS, splits, params.tasks, params.seed, described)
    print(summary, file=sys.stderr)
