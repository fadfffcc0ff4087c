"""Class folds of the search objective: disjoint held-out groups, reproducible, scored one training each."""

from __future__ import annotations

import numpy as np
import pytest
from image_folders import make_flat

from metahpo.errors import ConfigError
from metahpo.search.class_folds import check_folds, class_count, class_folds, most_folds, source_count
from metahpo.search.driver import Search
from metahpo.search.trial import TrialRequest, repeat_seeds, run_trial
from metahpo.tasks.episodes import generate_episode_splits
from metahpo.tasks.images import image_folder_classes
from metahpo.tasks.sinusoid import generate_splits

from conftest import task_params, typed


@pytest.fixture(scope="module")
def digits_splits(tmp_path_factory):
    """8x8 image splits of 15 source classes turned by 0 and 90 degrees: 18 / 6 / 6 classes (9 / 3 / 3 sources)."""
    root = tmp_path_factory.mktemp("folds") / "data"
    make_flat(root, classes=15, per_class=8)
    splits, _ = generate_episode_splits(task_params(), 0, image_folder_classes(root, 8, [0, 90]), "data")
    return splits


def _image_keys(split: dict, label: int) -> set[bytes]:
    return {image.tobytes() for image in split["images"][split["labels"] == label]}


def _class_keys(split: dict) -> list[set[bytes]]:
    return [_image_keys(split, c) for c in range(class_count(split))]


def test_folds_hold_out_disjoint_meta_train_groups_and_train_on_the_rest(digits_splits):
    train, val = digits_splits["meta_train"], digits_splits["meta_val"]
    assert (class_count(train), class_count(val), most_folds(train, val, seed=0)) == (18, 6, 4)
    assert (source_count(train), source_count(val)) == (9, 3)
    folds = class_folds(train, val, 4, seed=0)
    assert len(folds) == 4 and folds[0][0] is train and folds[0][1] is val
    train_classes, val_classes = _class_keys(train), _class_keys(val)
    held_out = []
    for fold_train, fold_val in folds[1:]:
        held = _class_keys(fold_val)
        assert len(held) == 6 and all(c in train_classes for c in held)  # whole meta_train classes
        assert np.bincount(fold_val["class_sources"]).tolist() == [2, 2, 2]  # whole sources: both rotations
        kept = _class_keys(fold_train)
        assert len(kept) == 18 and all(c in kept for c in val_classes)  # meta_val classes train
        assert not any(c in kept for c in held)
        assert fold_val["support_index"].shape == val["support_index"].shape
        assert fold_val["query_index"].shape == val["query_index"].shape
        for e in range(len(fold_val["support_index"])):
            drawn = np.concatenate([fold_val["support_index"][e], fold_val["query_index"][e]], axis=1)
            assert len(np.unique(drawn)) == drawn.size
            labels = fold_val["labels"][drawn]
            assert all(len(set(row)) == 1 for row in labels.tolist()) and len(set(labels[:, 0])) == 5
        held_out.extend(held)
    assert len({frozenset(c) for c in held_out}) == 18  # the three groups cover meta_train once


def test_folds_are_reproducible_and_follow_the_seed(digits_splits):
    train, val = digits_splits["meta_train"], digits_splits["meta_val"]
    a, b, c = (class_folds(train, val, 3, seed=s) for s in (0, 0, 1))
    for (ta, va), (tb, vb) in zip(a, b):
        for key in va:
            np.testing.assert_array_equal(va[key], vb[key])
        np.testing.assert_array_equal(ta["images"], tb["images"])
    assert any(_class_keys(va) != _class_keys(vc) for (_, va), (_, vc) in zip(a[1:], c[1:]))
    assert class_folds(train, val, 1, seed=0) == [(train, val)]


def test_more_folds_than_the_classes_allow_name_the_key(digits_splits):
    train, val = digits_splits["meta_train"], digits_splits["meta_val"]
    expected = (
        r"^search.class_folds: 5 folds need 4 groups of whole meta_train source classes with at least 6 classes "
        r"each .* 9 sources \(18 classes\) give 3, so at most 4 \(lower search.class_folds"
    )
    with pytest.raises(ConfigError, match=expected):
        check_folds(5, train, val, seed=0)


def _trial(params: dict, folds: list, seed: int):
    result = run_trial(TrialRequest(0, {"inner_lr": 0.4}, seed, typed(params), folds))
    assert result.status == "ok", result.error
    return result


def test_a_trial_trains_each_fold_with_the_next_seeds_and_scores_the_mean(tiny_params, digits_splits):
    tiny_params["tasks"].update(family="digits", ways=5, shots=1, query=3)
    tiny_params["meta"]["query"] = 3
    tiny_params["search"].update(iterations=5, objective="accuracy", class_folds=2)
    folds = class_folds(digits_splits["meta_train"], digits_splits["meta_val"], 2, seed=0)
    both = _trial(tiny_params, folds, seed=5)
    assert len(both.objectives) == 2 and all(0.0 <= v <= 1.0 for v in both.objectives)
    assert both.objective == pytest.approx(sum(both.objectives) / 2, rel=1e-12)
    # Fold 0 is meta_val with the trial seed; fold 1 its own split with the next seed of the trial.
    assert both.objectives == [
        _trial(tiny_params, folds[f : f + 1], s).objective for f, s in enumerate(repeat_seeds(5, 2))
    ]
    # With repeats, a fold's trainings are consecutive: fold 0 gets seeds 0 and 1, fold 1 seeds 2 and 3.
    tiny_params["search"]["repeats"] = 2
    repeated = _trial(tiny_params, folds, seed=5)
    tiny_params["search"]["repeats"] = 1
    seeds = repeat_seeds(5, 4)
    expected = [_trial(tiny_params, folds[f // 2 : f // 2 + 1], seeds[f]).objective for f in range(4)]
    assert repeated.objectives == expected


def test_too_many_folds_stop_the_search_before_it_writes(tiny_params, digits_splits, tmp_path):
    tiny_params["tasks"].update(family="digits", ways=5, shots=1, query=3)
    tiny_params["meta"]["query"] = 3
    tiny_params["search"]["class_folds"] = 5
    with pytest.raises(ConfigError, match="search.class_folds: 5 folds"):
        Search(typed(tiny_params), digits_splits, 1.0, tmp_path / "search", tmp_path / "manifest.json")
    assert not (tmp_path / "search").exists()


def test_one_fold_is_the_stored_splits_of_any_family(tiny_params):
    splits = generate_splits(typed(tiny_params).tasks, 0)  # sinusoid: no class labels at all
    [(train, val)] = class_folds(splits["meta_train"], splits["meta_val"], 1, seed=0)
    assert train is splits["meta_train"] and val is splits["meta_val"]
