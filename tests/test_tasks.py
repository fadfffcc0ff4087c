"""Sinusoid task generation: the requested distribution, determinism, and tamper detection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metahpo.errors import TaskDataError
from metahpo.tasks.sinusoid import SPLITS, generate_splits
from metahpo.tasks.storage import load_split, save_splits

from conftest import typed


@pytest.fixture
def big_tasks(tiny_params):
    tiny_params["tasks"]["splits"] = {"meta_train": 4000, "meta_val": 50, "meta_test": 60, "meta_ood": 500}
    return typed(tiny_params).tasks


def test_tasks_follow_the_requested_distribution(big_tasks):
    train = generate_splits(big_tasks, seed=3)["meta_train"]
    a, phase, x, y = train["amplitude"], train["phase"], train["x"], train["y"]
    lo, hi = big_tasks.amplitude
    assert a.min() >= lo and a.max() <= hi
    assert abs(a.mean() - (lo + hi) / 2) < 0.1  # U[0.1, 5]: sd of the mean ~ 0.022
    assert phase.min() >= 0 and phase.max() <= np.pi and abs(phase.mean() - np.pi / 2) < 0.05
    assert x.min() >= -5 and x.max() <= 5 and abs(x.mean()) < 0.05
    np.testing.assert_allclose(y, a[:, None, None] * np.sin(x - phase[:, None, None]), rtol=1e-5, atol=1e-5)
    assert x.shape == (4000, big_tasks.train_points, 1) and x.dtype == np.float32


def test_out_of_distribution_tasks_come_from_the_ood_ranges(big_tasks):
    ood = generate_splits(big_tasks, seed=3)["meta_ood"]
    (a_lo, a_hi), (p_lo, p_hi) = big_tasks.ood.amplitude, big_tasks.ood.phase
    assert ood["amplitude"].min() >= a_lo and ood["amplitude"].max() <= a_hi
    assert ood["phase"].min() >= p_lo - 1e-6 and ood["phase"].max() <= p_hi + 1e-6
    assert abs(ood["amplitude"].mean() - (a_lo + a_hi) / 2) < 0.2


def test_evaluation_splits_have_support_query_and_grid(big_tasks):
    test = generate_splits(big_tasks, seed=3)["meta_test"]
    assert test["support_x"].shape == (60, max(big_tasks.shots, *big_tasks.eval_shots), 1)
    assert test["query_x"].shape == (60, big_tasks.query, 1)
    assert test["grid_y"].shape == (60, big_tasks.grid_points, 1)
    np.testing.assert_allclose(test["grid_x"][:, 0], np.linspace(-5, 5, big_tasks.grid_points), atol=1e-6)
    expected = test["amplitude"][:, None, None] * np.sin(test["grid_x"][None] - test["phase"][:, None, None])
    np.testing.assert_allclose(test["grid_y"], expected, atol=1e-5)


def test_same_seed_same_tasks_and_other_seed_other_tasks(big_tasks):
    first, again, other = (generate_splits(big_tasks, seed=s) for s in (1, 1, 2))
    for split in SPLITS:
        for key, arr in first[split].items():
            assert np.array_equal(arr, again[split][key])
    assert not np.array_equal(first["meta_test"]["amplitude"], other["meta_test"]["amplitude"])


def test_splits_are_independent_streams(big_tasks):
    bigger = big_tasks.model_copy(update={"splits": {**big_tasks.splits, "meta_train": 10}})
    a, b = generate_splits(big_tasks, 0), generate_splits(bigger, 0)
    assert np.array_equal(a["meta_test"]["support_x"], b["meta_test"]["support_x"])


def test_saved_splits_round_trip_and_files_are_identical(tmp_path, tiny_params):
    splits = generate_splits(typed(tiny_params).tasks, 0)
    save_splits(tmp_path / "a", splits, typed(tiny_params).tasks, 0)
    save_splits(tmp_path / "b", splits, typed(tiny_params).tasks, 0)
    for name in SPLITS:
        assert (tmp_path / "a" / f"{name}.npz").read_bytes() == (tmp_path / "b" / f"{name}.npz").read_bytes()
        loaded = load_split(tmp_path / "a", name)
        for key, arr in splits[name].items():
            assert np.array_equal(loaded[key], arr)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["family"] == "sinusoid" and set(manifest["splits"]) == set(SPLITS)


def _saved(tmp_path, tiny_params):
    save_splits(tmp_path, generate_splits(typed(tiny_params).tasks, 0), typed(tiny_params).tasks, 0)
    return tmp_path


def test_tampered_truncated_or_missing_files_are_named(tmp_path, tiny_params):
    data = _saved(tmp_path, tiny_params)
    path = data / "meta_val.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(TaskDataError, match="meta_val.npz: contents do not match the manifest"):
        load_split(data, "meta_val")
    (data / "meta_test.npz").unlink()
    with pytest.raises(TaskDataError, match="meta_test.npz: missing"):
        load_split(data, "meta_test")
    (data / "manifest.json").write_text("{not json")
    with pytest.raises(TaskDataError, match="manifest.json: not valid JSON"):
        load_split(data, "meta_train")


def test_consistent_but_wrong_arrays_are_rejected(tmp_path, tiny_params):
    data = _saved(tmp_path, tiny_params)
    arrays = dict(np.load(data / "meta_val.npz"))
    arrays["grid_y"][0, 0, 0] = np.nan
    splits = generate_splits(typed(tiny_params).tasks, 0)
    splits["meta_val"] = arrays
    save_splits(data, splits, typed(tiny_params).tasks, 0)
    with pytest.raises(TaskDataError, match="meta_val.npz: array 'grid_y' contains NaN"):
        load_split(data, "meta_val")
