"""The evaluation protocol's statistics and per-step errors on analytically known cases."""

from __future__ import annotations

import math

import numpy as np
import torch

from metahpo.learners.adaptation import adaptation_errors, classification_scores, summarize
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.tasks.episodes import generate_episode_splits
from metahpo.tasks.images import digits_classes
from metahpo.tasks.sinusoid import generate_splits

from conftest import task_params, typed


def test_mean_and_ci_of_a_known_sample():
    stats = summarize(np.array([1.0, 2.0, 3.0, 4.0]))
    std = math.sqrt(5 / 3)  # sample standard deviation of 1..4
    assert stats["mse"] == 2.5
    assert math.isclose(stats["std"], std)
    assert math.isclose(stats["ci95"], 1.96 * std / 2)


def test_non_finite_errors_have_no_statistics():
    assert summarize(np.array([1.0, np.inf])) == {"mse": None, "std": None, "ci95": None}


def _zero_learner(inner_lr: float) -> MetaLearner:
    learner = MetaLearner(LearnerConfig("maml", 8, 1, inner_lr, 1), torch.Generator().manual_seed(0))
    for p in learner.parameters():
        p.data.zero_()
    return learner


def test_zero_predictor_error_is_the_mean_square_of_the_targets(tiny_params):
    split = generate_splits(typed(tiny_params).tasks, 0)["meta_test"]
    errors = adaptation_errors(_zero_learner(0.0), split, 3, chunk=5, device=torch.device("cpu"))
    expected_grid = (split["grid_y"].astype(np.float64) ** 2).mean(axis=(1, 2))
    expected_query = (split["query_y"].astype(np.float64) ** 2).mean(axis=(1, 2))
    for step in range(4):  # a zero learning rate never moves the prediction
        np.testing.assert_allclose(errors["grid"][step], expected_grid, rtol=1e-6)
        np.testing.assert_allclose(errors["query"][step], expected_query, rtol=1e-6)


def test_one_step_of_a_zero_network_fits_only_the_output_bias(tiny_params):
    """From all-zero weights only the output bias has a gradient: after one step it is lr·2·mean(y)."""
    split = generate_splits(typed(tiny_params).tasks, 0)["meta_test"]
    lr = 0.3
    errors = adaptation_errors(_zero_learner(lr), split, 1, chunk=16, device=torch.device("cpu"))
    bias = lr * 2 * split["support_y"].astype(np.float64).mean(axis=(1, 2))
    expected = ((split["grid_y"][:, :, 0] - bias[:, None]) ** 2).mean(axis=1)
    np.testing.assert_allclose(errors["grid"][1], expected, rtol=1e-5)


def test_classification_scores_do_not_depend_on_the_chunk():
    """``evaluate.task_chunk`` only sets how many episodes adapt at once.

    Chunks of several episodes give bit-identical scores; a chunk of one episode runs other convolution
    kernels (one group), which round differently in the last bits.
    """
    tasks = task_params(eval_shots=[1], splits={"meta_val": 4, "meta_test": 7})
    split = generate_episode_splits(tasks, 0, digits_classes([0, 90, 180, 270]), "digits")[0]["meta_test"]
    config = LearnerConfig("maml", 8, 4, 0.4, 1, "conv", (8, 8), 5, "cross_entropy")
    learner = MetaLearner(config, torch.Generator().manual_seed(0))
    whole, halves, single = (classification_scores(learner, split, 2, c, torch.device("cpu"), 1) for c in (7, 4, 1))
    assert whole["accuracy"].shape == (3, 7) and not np.array_equal(whole["loss"][0], whole["loss"][2])
    for key in ("accuracy", "loss"):
        np.testing.assert_array_equal(halves[key], whole[key])
        np.testing.assert_allclose(single[key], whole[key], rtol=1e-5)
