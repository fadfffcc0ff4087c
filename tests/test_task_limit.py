"""Reference rows: the task's limit on sinusoid tasks (the true family fitted to the K support points) and the
classification floor (the nearest class mean on raw pixels)."""

from __future__ import annotations

import numpy as np
import pytest

from metahpo.evaluation.regression import reference_results
from metahpo.evaluation.task_limit import fit_sinusoids, limit_errors, pixel_floor_accuracy
from metahpo.learners.adaptation import summarize
from metahpo.tasks.sinusoid import generate_splits

from conftest import typed

AMPLITUDE, PHASE = (0.1, 5.0), (0.0, np.pi)


@pytest.fixture(scope="module")
def params():
    from conftest import load_default_params, shrink

    raw = shrink(load_default_params())
    raw["tasks"]["splits"].update(meta_test=300, meta_ood=50)
    raw["tasks"]["eval_shots"] = [1, 2, 5, 10, 20]
    return typed(raw)


@pytest.fixture(scope="module")
def splits(params):
    generated = generate_splits(params.tasks, params.seed)
    return {"test": generated["meta_test"], "ood": generated["meta_ood"]}


@pytest.mark.parametrize("shots", [2, 5, 10, 20])
def test_noise_free_tasks_are_fitted_exactly_from_two_points_on(splits, shots):
    test = splits["test"]
    amplitude, phase = fit_sinusoids(test["support_x"][:, :shots, 0], test["support_y"][:, :shots, 0], AMPLITUDE, PHASE)
    np.testing.assert_allclose(amplitude, test["amplitude"], atol=2e-4)
    np.testing.assert_allclose(phase, test["phase"], atol=2e-4)
    errors = limit_errors(test, shots, AMPLITUDE, PHASE)
    assert errors["grid"].mean() < 1e-8 and errors["query"].mean() < 1e-8


def test_the_limit_grows_as_k_shrinks(splits):
    test = splits["test"]
    # One point cannot fix two parameters: the limit is far from zero, even without noise.
    assert limit_errors(test, 1, AMPLITUDE, PHASE)["grid"].mean() > 0.1
    noisy = dict(test, support_y=test["support_y"] + np.random.default_rng(0).normal(0, 0.3, test["support_y"].shape))
    means = [limit_errors(noisy, k, AMPLITUDE, PHASE)["grid"].mean() for k in (2, 5, 10, 20)]
    assert all(a > b for a, b in zip(means, means[1:])), means
    assert means[-1] < 0.05  # 0.3 noise on 20 points of a two-parameter family


def test_the_fit_stays_inside_the_ranges_and_is_deterministic(splits):
    ood = splits["ood"]  # amplitudes and phases outside the in-distribution ranges
    x, y = ood["support_x"][:, :10, 0], ood["support_y"][:, :10, 0]
    amplitude, phase = fit_sinusoids(x, y, AMPLITUDE, PHASE)
    assert amplitude.min() >= AMPLITUDE[0] and amplitude.max() <= AMPLITUDE[1]
    assert phase.min() >= PHASE[0] and phase.max() <= PHASE[1]
    again = fit_sinusoids(x, y, AMPLITUDE, PHASE)
    assert amplitude.tobytes() == again[0].tobytes() and phase.tobytes() == again[1].tobytes()


def test_the_limit_row_is_scored_with_the_learners_statistics(params, splits):
    (entry, plots), *rest = reference_results(params, splits).values()
    assert not rest
    errors = limit_errors(splits["test"], 5, AMPLITUDE, PHASE)
    expected = summarize(errors["grid"])
    assert entry["test"]["grid"]["k5"] == {"mse": expected["mse"], "ci95": expected["ci95"]}
    assert set(entry["test"]["query"]) == {"k1", "k2", "k5", "k10", "k20"} and set(entry["ood"]["grid"]) == {"k10"}
    # meta_ood is fitted within its own ranges (tasks.ood), so it is exact too.
    assert entry["ood"]["grid"]["k10"]["mse"] < 1e-8
    curve = plots["adaptation"]
    assert len(curve["step"]) == params.evaluate.max_steps + 1
    assert set(curve["grid_mse"]) == {entry["test"]["grid"]["k10"]["mse"]}
    assert plots["kshot"]["grid_mse"][0] == entry["test"]["grid"]["k1"]["mse"]


def test_the_pixel_floor_is_the_nearest_class_mean_in_raw_pixels():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(12, 3, 3)).astype(np.float32)
    # 2 episodes of 2 classes: support pools of 2 images per class, 2 queries per class.
    split = {
        "images": images,
        "support_index": np.array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]]),
        "query_index": np.array([[[0, 8], [2, 9]], [[10, 5], [11, 7]]]),
    }
    for shots in (1, 2):
        per_episode = []
        for e in range(2):
            means = [images[split["support_index"][e, c, :shots]].mean(0) for c in range(2)]
            queries = [(images[q], c) for c in range(2) for q in split["query_index"][e, c]]
            right = [np.argmin([((x - m) ** 2).sum() for m in means]) == c for x, c in queries]
            per_episode.append(np.mean(right))
        np.testing.assert_array_equal(pixel_floor_accuracy(split, shots, chunk=1), per_episode)
    # Queries that are support images of their own class are always right with one shot.
    assert pixel_floor_accuracy(split, 1, chunk=2)[0] >= 0.5
