"""Class folds for the search objective: score a setting on more held-out classes than meta_val has.

Fold 0 is the stored split: train on meta_train, score on the stored meta_val episodes. Fold ``f`` >= 1
holds out a group of meta_train source classes with all their rotations, at least as many classes as
meta_val has (the groups are disjoint, drawn from the seed), trains on the other meta_train classes
together with the meta_val classes, and scores on episodes of the held-out group sampled like the
stored ones. No held-out class is a turned copy of a class it trains on, and meta_test is never touched.
"""

from __future__ import annotations

import numpy as np

from metahpo.errors import ConfigError
from metahpo.tasks.episodes import sample_episodes, subset
from metahpo.tasks.images import ImageClasses

# The fold draw's entropy is [seed, FOLD_STREAM]; trial seeds use [seed, trial], so only a search of more
# than 7,000 trials has a trial whose torch seed comes from the same entropy (an unrelated use of it).
FOLD_STREAM = 7_001


def class_count(split: dict[str, np.ndarray]) -> int:
    """Classes in a loaded split (labels are 0..count-1)."""
    return len(split["class_sources"])


def source_count(split: dict[str, np.ndarray]) -> int:
    """Source classes in a loaded split (each class is one of them or a rotation of one)."""
    return int(split["class_sources"].max()) + 1


def _fold_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, FOLD_STREAM]))


def held_out_groups(meta_train: dict, meta_val: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint groups of meta_train classes, each made of whole sources and holding at least as many
    classes as meta_val: sources are taken in an order drawn by ``rng`` until a group is full."""
    groups, current = [], []
    for source in rng.permutation(source_count(meta_train)):
        current.extend(np.flatnonzero(meta_train["class_sources"] == source).tolist())
        if len(current) >= class_count(meta_val):
            groups.append(np.sort(np.array(current, dtype=np.int64)))
            current = []
    return groups


def most_folds(meta_train: dict, meta_val: dict, seed: int) -> int:
    """How many folds the splits allow: the stored one plus one per held-out group of meta_train."""
    return 1 + len(held_out_groups(meta_train, meta_val, _fold_rng(seed)))


def check_folds(folds: int, meta_train: dict, meta_val: dict, seed: int) -> None:
    """Raise :class:`ConfigError` naming ``search.class_folds`` if the class splits cannot give ``folds`` folds."""
    most = most_folds(meta_train, meta_val, seed)
    if folds > most:
        raise ConfigError(
            f"search.class_folds: {folds} folds need {folds - 1} groups of whole meta_train source classes with "
            f"at least {class_count(meta_val)} classes each (as many as meta_val); meta_train's "
            f"{source_count(meta_train)} sources ({class_count(meta_train)} classes) give {most - 1}, so at most "
            f"{most} (lower search.class_folds, or give meta_train more classes in tasks.class_splits)"
        )


def class_folds(meta_train: dict, meta_val: dict, folds: int, seed: int) -> list[tuple[dict, dict]]:
    """The ``(train split, validation split)`` pairs of every fold; the first is ``(meta_train, meta_val)``.

    One fold is just the stored splits, of any task family (regression splits have no classes).
    """
    out = [(meta_train, meta_val)]
    if folds == 1:
        return out
    check_folds(folds, meta_train, meta_val, seed)
    n_train, n_val = class_count(meta_train), class_count(meta_val)
    # Sources of the two splits never coincide: number meta_val's after meta_train's.
    sources = np.concatenate([meta_train["class_sources"], meta_val["class_sources"] + source_count(meta_train)])
    pooled = ImageClasses(
        np.concatenate([meta_train["images"], meta_val["images"]]),
        np.concatenate([meta_train["labels"], meta_val["labels"] + n_train]),
        [str(c) for c in range(n_train + n_val)],
        [str(s) for s in sources],
    )
    rng = _fold_rng(seed)
    groups = held_out_groups(meta_train, meta_val, rng)
    n_episodes, ways, pool = meta_val["support_index"].shape
    query = meta_val["query_index"].shape[2]
    for held in groups[: folds - 1]:
        kept = np.setdiff1d(np.arange(n_train + n_val), held)
        validation = subset(pooled, held)
        validation |= sample_episodes(validation["labels"], n_episodes, ways, pool, query, rng)
        out.append((subset(pooled, kept), validation))
    return out
