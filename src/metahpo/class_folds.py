"""Class folds for the search objective: score a setting on more held-out classes than meta_val has.

Fold 0 is the stored split: train on meta_train, score on the stored meta_val episodes. Fold ``f`` >= 1
holds out a group of meta_train classes as large as meta_val (the groups are disjoint, drawn from the
seed), trains on the other meta_train classes together with the meta_val classes, and scores on
episodes of the held-out group sampled like the stored ones. meta_test is never touched.
"""

from __future__ import annotations

import numpy as np

from metahpo.episodes import sample_episodes, subset
from metahpo.errors import ConfigError
from metahpo.images import ImageClasses

# The fold draw's entropy is [seed, FOLD_STREAM]; trial seeds use [seed, trial], so only a search of more
# than 7,000 trials has a trial whose torch seed comes from the same entropy (an unrelated use of it).
FOLD_STREAM = 7_001


def class_count(split: dict[str, np.ndarray]) -> int:
    """Classes in a loaded split (labels are 0..count-1)."""
    return int(split["labels"].max()) + 1


def most_folds(meta_train: dict, meta_val: dict) -> int:
    """How many folds the splits allow: the stored one plus one per meta_val-sized group of meta_train classes."""
    return 1 + class_count(meta_train) // class_count(meta_val)


def check_folds(folds: int, meta_train: dict, meta_val: dict) -> None:
    """Raise :class:`ConfigError` naming ``search.class_folds`` if the class splits cannot give ``folds`` folds."""
    most = most_folds(meta_train, meta_val)
    if folds > most:
        raise ConfigError(
            f"search.class_folds: {folds} folds need {(folds - 1) * class_count(meta_val)} meta_train classes "
            f"(meta_val's {class_count(meta_val)} per extra fold); meta_train has {class_count(meta_train)}, "
            f"so at most {most} (lower search.class_folds, or give meta_train more classes in tasks.class_splits)"
        )


def class_folds(meta_train: dict, meta_val: dict, folds: int, seed: int) -> list[tuple[dict, dict]]:
    """The ``(train split, validation split)`` pairs of every fold; the first is ``(meta_train, meta_val)``.

    One fold is just the stored splits, of any task family (regression splits have no classes).
    """
    out = [(meta_train, meta_val)]
    if folds == 1:
        return out
    check_folds(folds, meta_train, meta_val)
    n_train, n_val = class_count(meta_train), class_count(meta_val)
    pooled = ImageClasses(
        np.concatenate([meta_train["images"], meta_val["images"]]),
        np.concatenate([meta_train["labels"], meta_val["labels"] + n_train]),
        [str(c) for c in range(n_train + n_val)],
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, FOLD_STREAM]))
    order = rng.permutation(n_train)
    n_episodes, ways, pool = meta_val["support_index"].shape
    query = meta_val["query_index"].shape[2]
    for f in range(1, folds):
        held = np.sort(order[(f - 1) * n_val : f * n_val])
        kept = np.setdiff1d(np.arange(n_train + n_val), held)
        validation = subset(pooled, held)
        validation |= sample_episodes(validation["labels"], n_episodes, ways, pool, query, rng)
        out.append((subset(pooled, kept), validation))
    return out
