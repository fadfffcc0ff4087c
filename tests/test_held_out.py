"""Held-out means held-out: no meta_val or meta_test image is a meta_train image, not even turned."""

from __future__ import annotations

import json

import numpy as np
import pytest
from image_folders import make_flat, make_omniglot

from metahpo.errors import TaskDataError
from metahpo.params import validate
from metahpo.search.class_folds import class_folds
from metahpo.tasks.episodes import generate_episode_splits
from metahpo.tasks.generate import generate_stage
from metahpo.tasks.images import digits_classes, image_folder_classes
from metahpo.tasks.storage import load_manifest, load_split

from conftest import task_params, typed

HELD_OUT = ("meta_val", "meta_test")


def quarter_turns(images: np.ndarray) -> set[bytes]:
    """Every image of ``images`` and its turns by 90, 180 and 270 degrees, as bytes."""
    return {np.ascontiguousarray(np.rot90(image, k)).tobytes() for image in images for k in range(4)}


def turned_copies(train: dict, held: dict) -> int:
    """Images of ``held`` that equal an image of ``train`` up to a quarter turn (pixel for pixel)."""
    seen = quarter_turns(train["images"])
    return sum(image.tobytes() in seen for image in held["images"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_held_out_digit_is_a_turned_training_digit(seed):
    splits, described = generate_episode_splits(task_params(ways=4), seed, digits_classes([0, 90, 180, 270]), "digits")
    for name in HELD_OUT:
        assert turned_copies(splits["meta_train"], splits[name]) == 0, name
    assert turned_copies(splits["meta_val"], splits["meta_test"]) == 0
    sources = [set(described[name]["sources"]) for name in ("meta_train", *HELD_OUT)]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert set().union(*sources) == {"0", "1", "2", "3", "4", "5", "6+9", "7", "8"}


@pytest.mark.parametrize(("layout", "split_by"), [("flat", "character"), ("omniglot", "character"),
                                                  ("omniglot", "alphabet")])  # fmt: skip
def test_no_held_out_image_is_a_turned_training_image(tmp_path, layout, split_by):
    if layout == "flat":
        make_flat(tmp_path / "data", classes=8)
    else:
        make_omniglot(tmp_path / "data", alphabets=4, characters=2)
    classes = image_folder_classes(tmp_path / "data", 12, [0, 90, 180, 270], split_by)
    small = task_params(ways=2, query=2, eval_shots=[1, 2], class_splits={"meta_train": 0.5, "meta_val": 0.25,
                                                                          "meta_test": 0.25})  # fmt: skip
    splits, described = generate_episode_splits(small, 0, classes, "data")
    for name in HELD_OUT:
        assert turned_copies(splits["meta_train"], splits[name]) == 0, name
        # Each source class brings all four of its rotations into the split.
        for source, names in described[name]["sources"].items():
            assert len(names) == 4 * (2 if split_by == "alphabet" else 1)
            bases = {n.split("@")[0] for n in names}
            assert all(b.startswith(f"{source}/") for b in bases) if split_by == "alphabet" else bases == {source}
    if split_by == "alphabet":
        alphabets = {name: set(described[name]["sources"]) for name in ("meta_train", *HELD_OUT)}
        assert [len(a) for a in alphabets.values()] == [2, 1, 1]
        assert all(c.split("/")[0] in alphabets["meta_val"] for c in described["meta_val"]["classes"])
        assert not alphabets["meta_train"] & (alphabets["meta_val"] | alphabets["meta_test"])


def test_class_folds_hold_out_whole_sources(tmp_path):
    splits, _ = generate_episode_splits(task_params(ways=4), 0, digits_classes([0, 90, 180, 270]), "digits")
    folds = class_folds(splits["meta_train"], splits["meta_val"], 2, seed=0)
    assert len(folds) == 2
    for fold_train, fold_val in folds:
        assert turned_copies(fold_train, fold_val) == 0
        assert len(fold_val["class_sources"]) >= len(splits["meta_val"]["class_sources"])


def test_the_manifest_groups_classes_by_source(tmp_path, monkeypatch, tiny_params):
    tiny_params["tasks"].update(family="digits", ways=5, shots=1, query=3, eval_shots=[1, 2])
    tiny_params["tasks"]["splits"].update(meta_val=4, meta_test=4)
    tiny_params["meta"]["query"] = 3
    monkeypatch.chdir(tmp_path)
    generate_stage(typed(tiny_params))
    manifest = load_manifest("data/tasks")
    for name in ("meta_train", *HELD_OUT):
        entry = manifest["splits"][name]
        grouped = [c for names in entry["sources"].values() for c in names]
        assert sorted(grouped) == sorted(entry["classes"])
        for source, names in entry["sources"].items():
            assert {n.split("@")[0] for n in names} <= set(source.split("+"))
        split = load_split("data/tasks", name)
        assert len(split["class_sources"]) == len(entry["classes"])
        assert split["class_sources"].max() + 1 == len(entry["sources"])
    assert manifest["splits"]["meta_test"]["sources"].keys() == {"4", "6+9"}  # seed 0


def test_old_task_data_is_refused_naming_the_file(tmp_path, monkeypatch, tiny_params):
    monkeypatch.chdir(tmp_path)
    generate_stage(typed(tiny_params))
    path = tmp_path / "data/tasks/manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(TaskDataError, match=r"manifest.json: task data format 2, .* regenerate it"):
        load_split("data/tasks", "meta_val")


def test_split_by_alphabet_needs_alphabets(tmp_path, tiny_params):
    make_flat(tmp_path / "data")
    with pytest.raises(TaskDataError, match=r"data: tasks.split_by: alphabet needs the Omniglot layout"):
        image_folder_classes(tmp_path / "data", 8, [0], "alphabet")
    tiny_params["tasks"].update(family="digits", split_by="alphabet")
    assert "tasks.split_by: alphabet needs tasks.family: image_folder in the Omniglot layout, got digits" in validate(
        tiny_params
    )
