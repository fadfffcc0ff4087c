"""DVC stage ``generate``: write every split of the task family under ``data/tasks``."""

from __future__ import annotations

import sys

from metahpo import paths
from metahpo.atomic import atomic_dir
from metahpo.errors import ConfigError
from metahpo.params import Params, TaskParams
from metahpo.resources import free_disk, gib, physical_memory
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


# Bytes per stored value while a split is made: drawn as float64, then copied to float32.
BYTES_PER_VALUE = 12
USABLE_FRACTION = 0.8


def stored_values(tasks: TaskParams) -> int:
    """Numbers generate stores: sinusoid inputs and targets, or the held-out episodes' image indices."""
    splits = tasks.splits
    if tasks.classification:  # the images come from the source; the episodes are new
        per_episode = tasks.ways * (tasks.support_pool + tasks.query)
        return sum(splits[name] for name in ("meta_val", "meta_test")) * per_episode
    per_task = 2 * (tasks.support_pool + tasks.query) + tasks.grid_points + 2
    held_out = sum(splits[name] for name in ("meta_val", "meta_test", "meta_ood"))
    return splits["meta_train"] * (2 * tasks.train_points + 2) + held_out * per_task


def check_size(tasks: TaskParams) -> None:
    """Refuse task settings whose arrays cannot be held in memory or stored on disk, naming the keys."""
    values = stored_values(tasks)
    keys = (
        "tasks.splits, tasks.ways, tasks.shots, tasks.eval_shots, tasks.query"
        if tasks.classification
        else "tasks.splits, tasks.train_points, tasks.grid_points, tasks.eval_shots, tasks.query"
    )
    need, memory = values * BYTES_PER_VALUE, physical_memory()
    if need > USABLE_FRACTION * memory:
        raise ConfigError(
            f"params.yaml: {keys}: the task arrays need about {gib(need)} of memory while they are made, more than "
            f"{USABLE_FRACTION:.0%} of this machine's {gib(memory)}; lower {keys.split(',')[0]}"
        )
    disk, free = values * 8, free_disk(paths.TASKS)  # at most 8 bytes a value (int64 indices; float32 is 4)
    if disk > free:
        raise ConfigError(
            f"params.yaml: {keys}: the task files need about {gib(disk)}, more than the {gib(free)} free "
            f"under {paths.TASKS}; lower {keys.split(',')[0]}"
        )


def generate_stage(params: Params, device=None) -> None:
    """Generate the family's splits from the seed and store them with their manifest."""
    check_size(params.tasks)
    generate = classification_splits if params.tasks.classification else regression_splits
    splits, described, summary = generate(params.tasks, params.seed)
    with atomic_dir(paths.TASKS) as staging:  # complete or absent, whenever interrupted
        save_splits(staging, splits, params.tasks, params.seed, described)
    print(summary, file=sys.stderr)
