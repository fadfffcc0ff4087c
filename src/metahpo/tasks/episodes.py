"""N-way K-shot classification episodes: class splits, stored evaluation episodes, and training batches.

Source classes (not images, and not rotated copies) are split between meta_train, meta_val and
meta_test, and each split takes every rotation of its sources, so held-out episodes contain only
classes never seen in meta-training, not even turned. A split's NPZ file holds its ``images`` and their
``labels`` (class indices within the split); meta_val and meta_test also hold their fixed episodes as
indices into ``images``: ``support_index [episodes, ways, pool]`` (pool = the largest K evaluated;
K-shot evaluation uses the first K) and ``query_index [episodes, ways, query]``. Within an episode,
class ``j`` of the index arrays has label ``j``; which split class that is, is drawn at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metahpo.errors import TaskDataError
from metahpo.params import TaskParams
from metahpo.tasks.images import ImageClasses

CLASS_SPLITS = ("meta_train", "meta_val", "meta_test")


def class_counts(n_sources: int, fractions: dict[str, float]) -> dict[str, int]:
    """Source classes in each split: rounded fractions for meta_val and meta_test, the rest for meta_train."""
    val = round(fractions["meta_val"] * n_sources)
    test = round(fractions["meta_test"] * n_sources)
    return {"meta_train": n_sources - val - test, "meta_val": val, "meta_test": test}


def split_classes(sources: list[str], fractions: dict[str, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint, sorted class indices of every split; ``sources[c]`` is the source of class ``c``.

    Source classes are split first (drawn by ``rng``, in the proportions of ``fractions``), and each split
    takes every class made from its sources: the rotations of a source never cross splits (the protocol
    of Vinyals et al. 2016 and the MAML paper for Omniglot).
    """
    unique = list(dict.fromkeys(sources))
    order = rng.permutation(len(unique))
    owner, start = {}, 0
    for name, count in class_counts(len(unique), fractions).items():
        owner |= {unique[i]: name for i in order[start : start + count]}
        start += count
    return {
        name: np.array([c for c, source in enumerate(sources) if owner[source] == name], dtype=np.int64)
        for name in CLASS_SPLITS
    }


def check_enough(classes: ImageClasses, splits: dict[str, np.ndarray], ways: int, per_class: int, source: str) -> None:
    """Raise :class:`TaskDataError` for a split with fewer than ``ways`` classes or a class with too few images."""
    n_sources = len(set(classes.sources))
    for name, members in splits.items():
        if len(members) < ways:
            held = len({classes.sources[c] for c in members})
            raise TaskDataError(
                f"{source}: {name} gets {len(members)} of the {len(classes.names)} classes ({held} of the "
                f"{n_sources} source classes, each with its rotations), fewer than tasks.ways = {ways} "
                "(add classes or change tasks.class_splits)"
            )
    counts = np.bincount(classes.labels, minlength=len(classes.names))
    for label in np.flatnonzero(counts < per_class):
        raise TaskDataError(
            f"{source}: class {classes.names[label]!r} has {counts[label]} images, fewer than the "
            f"{per_class} an episode draws per class (support pool + tasks.query)"
        )


def subset(classes: ImageClasses, members: np.ndarray) -> dict[str, np.ndarray]:
    """The images of ``members``, their labels renumbered 0..len(members)-1 and each class's source index.

    ``class_sources[c]`` numbers the sources of the kept classes 0.. in order of first appearance, so
    that a loaded split still knows which of its classes are rotations of one source.
    """
    keep = np.isin(classes.labels, members)
    relabel = np.full(len(classes.names), -1, dtype=np.int64)
    relabel[members] = np.arange(len(members))
    kept_sources = [classes.sources[c] for c in members]
    numbers = {s: i for i, s in enumerate(dict.fromkeys(kept_sources))}
    return {
        "images": classes.images[keep],
        "labels": relabel[classes.labels[keep]],
        "class_sources": np.array([numbers[s] for s in kept_sources], dtype=np.int64),
    }


def sample_episodes(
    labels: np.ndarray, n_episodes: int, ways: int, pool: int, query: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Fixed episodes over a split: ``ways`` distinct classes, ``pool`` support and ``query`` query images each."""
    by_class = [np.flatnonzero(labels == c) for c in range(labels.max() + 1)]
    support = np.empty((n_episodes, ways, pool), dtype=np.int64)
    queries = np.empty((n_episodes, ways, query), dtype=np.int64)
    for e in range(n_episodes):
        for j, c in enumerate(rng.choice(len(by_class), ways, replace=False)):
            drawn = rng.choice(by_class[c], pool + query, replace=False)
            support[e, j], queries[e, j] = drawn[:pool], drawn[pool:]
    return {"support_index": support, "query_index": queries}


def select_episodes(split: dict[str, np.ndarray], part: slice) -> dict[str, np.ndarray]:
    """The split with only the stored episodes in ``part`` (the images are shared, not copied)."""
    return {k: v[part] if k in ("support_index", "query_index") else v for k, v in split.items()}


def episode_arrays(split: dict[str, np.ndarray], shots: int) -> tuple[np.ndarray, ...]:
    """Support and query images and labels of every stored episode, using the first ``shots`` of the pool.

    Returns ``support_x [E, ways*shots, H, W]``, ``support_y [E, ways*shots]``, ``query_x``, ``query_y``.
    """
    n, ways = split["support_index"].shape[:2]
    support = split["support_index"][:, :, :shots].reshape(n, -1)
    queries = split["query_index"].reshape(n, -1)
    labels = np.arange(ways, dtype=np.int64)
    # Fresh (writable) arrays: torch warns about read-only ones, which a broadcast of one episode would be.
    support_y = np.tile(np.repeat(labels, shots), (n, 1))
    query_y = np.tile(np.repeat(labels, split["query_index"].shape[2]), (n, 1))
    return split["images"][support], support_y, split["images"][queries], query_y


@dataclass(frozen=True)
class EpisodePool:
    """meta_train images on the device, sampled into batches of N-way episodes.

    Episodes are labelled 0..N-1 in the order their classes were drawn, or, with ``global_labels``, by
    the classes' own indices (for a network trained on every meta_train class at once).
    """

    images: torch.Tensor  # [n, H, W]
    by_class: torch.Tensor  # [classes, most images of a class]: image indices, padded with -1
    counts: torch.Tensor  # [classes]
    ways: int
    global_labels: bool = False

    @classmethod
    def from_split(
        cls, split: dict[str, np.ndarray], ways: int, device: torch.device, global_labels: bool = False
    ) -> EpisodePool:
        """Move a loaded ``meta_train`` split to ``device``."""
        labels = split["labels"]
        counts = np.bincount(labels)
        by_class = np.full((len(counts), counts.max()), -1, dtype=np.int64)
        for c in range(len(counts)):
            by_class[c, : counts[c]] = np.flatnonzero(labels == c)
        return cls(
            torch.from_numpy(split["images"]).to(device),
            torch.from_numpy(by_class).to(device),
            torch.from_numpy(counts).to(device),
            ways,
            global_labels,
        )

    def sample(self, batch: int, shots: int, query: int, generator: torch.Generator):
        """Draw ``batch`` episodes: ``ways`` random classes, ``shots`` + ``query`` distinct images of each."""
        n_classes, width = self.by_class.shape
        classes = torch.rand(batch, n_classes, generator=generator).argsort(dim=1)[:, : self.ways]
        keys = torch.rand(batch, self.ways, width, generator=generator).to(self.images.device)
        classes = classes.to(self.images.device)
        valid = torch.arange(width, device=keys.device) < self.counts[classes].unsqueeze(-1)
        positions = keys.masked_fill(~valid, 2.0).argsort(dim=2)[:, :, : shots + query]
        index = torch.gather(self.by_class[classes], 2, positions)
        labels = torch.arange(self.ways, device=keys.device).view(1, self.ways, 1)
        if self.global_labels:
            labels = classes.view(batch, self.ways, 1)

        def part(sl: slice):
            idx = index[:, :, sl].reshape(batch, -1)
            y = labels.expand(batch, self.ways, idx.shape[1] // self.ways).reshape(batch, -1)
            return self.images[idx], y

        support_x, support_y = part(slice(0, shots))
        query_x, query_y = part(slice(shots, shots + query))
        return support_x, support_y, query_x, query_y


def generate_episode_splits(tasks: TaskParams, seed: int, classes: ImageClasses, source: str):
    """Class splits and stored episodes of a classification family.

    Returns ``(splits, described)``: the arrays of every split, and for the manifest the names of the
    classes each split holds and its source classes with the classes made from each.
    """
    streams = np.random.SeedSequence(seed).spawn(len(CLASS_SPLITS))
    members = split_classes(classes.sources, tasks.class_splits, np.random.default_rng(streams[0]))
    pool = tasks.support_pool
    check_enough(classes, members, tasks.ways, pool + tasks.query, source)
    splits, described = {}, {}
    for name, stream in zip(CLASS_SPLITS, streams):
        arrays = subset(classes, members[name])
        if name != "meta_train":
            rng = np.random.default_rng(stream)
            n = tasks.splits[name]
            arrays |= sample_episodes(arrays["labels"], n, tasks.ways, pool, tasks.query, rng)
        splits[name] = arrays
        by_source: dict[str, list[str]] = {}
        for c in members[name]:
            by_source.setdefault(classes.sources[c], []).append(classes.names[c])
        described[name] = {"classes": [classes.names[c] for c in members[name]], "sources": by_source}
    return splits, described
