"""The pretrained baseline's own fine-tuning rate and steps: the best of a grid, on meta_val only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metahpo import paths
from metahpo.learners import training
from metahpo.learners.adaptation import adaptation_errors
from metahpo.learners.finetuning import choose_finetuning, finetuning_rates, with_rate
from metahpo.learners.meta_learner import LearnerConfig
from metahpo.learners.metatrain import build_learner
from metahpo.learners.settings import default_setting, learner_config
from metahpo.tasks.generate import generate_stage
from metahpo.tasks.sinusoid import generate_splits

from conftest import typed

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def params():
    from conftest import load_default_params, shrink

    return typed(shrink(load_default_params()))


@pytest.fixture(scope="module")
def val(params):
    return generate_splits(params.tasks, params.seed)["meta_val"]


def test_the_choice_is_the_grid_minimum_of_meta_val_grid_mse(params, val):
    learner = build_learner(LearnerConfig("maml", 16, 2, 0.01, 1), 0, CPU)
    finetune = dataclasses.replace(params.train.finetune, lr=[0.001, 0.3], lr_points=5, max_steps=3)
    chosen = choose_finetuning(learner, val, finetune, params.tasks.shots, CPU)
    rates = finetuning_rates(finetune)
    assert chosen["grid"]["inner_lr"] == rates and chosen["grid"]["inner_steps"] == [1, 2, 3]
    table = np.array(
        [adaptation_errors(with_rate(learner, r, CPU), val, 3, 4, CPU, params.tasks.shots)["grid"][1:].mean(1)
         for r in rates]
    )  # fmt: skip
    np.testing.assert_allclose(chosen["grid"]["val_grid_mse"], table, rtol=1e-6)
    i, j = np.unravel_index(table.argmin(), table.shape)
    assert (chosen["inner_lr"], chosen["inner_steps"]) == (rates[i], j + 1)
    assert chosen == choose_finetuning(learner, val, finetune, params.tasks.shots, CPU)  # deterministic
    assert learner.config.inner_lr == 0.01  # the learner itself is left as it was


def test_a_diverging_rate_is_recorded_as_null_and_never_chosen(params, val):
    learner = build_learner(LearnerConfig("maml", 16, 2, 0.01, 1), 0, CPU)
    finetune = dataclasses.replace(params.train.finetune, lr=[0.01, 100.0], lr_points=5, max_steps=3)
    chosen = choose_finetuning(learner, val, finetune, params.tasks.shots, CPU)
    assert any(v is None for row in chosen["grid"]["val_grid_mse"] for v in row)
    assert np.isfinite(chosen["val_grid_mse"]) and chosen["inner_lr"] < 100.0


def test_the_fine_tuning_reads_meta_val_and_nothing_held_out(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generate_stage(params, CPU)
    for held_out in ("meta_test", "meta_ood"):  # gone: reading them would fail
        (paths.TASKS / f"{held_out}.npz").unlink()
    read = []

    def load_split(root, name):
        read.append(name)
        return original(root, name)

    original = training.load_split
    monkeypatch.setattr(training, "load_split", load_split)
    setting = default_setting(params)
    weights = build_learner(learner_config(setting, params), 3, CPU).state_dict()
    tuned, record = training.tune_pretrained(weights, setting, params, CPU)
    assert read == ["meta_val"]
    assert record["chosen_on"] == "meta_val"
    assert (tuned["inner_lr"], tuned["inner_steps"]) == (record["inner_lr"], record["inner_steps"])
    assert {k: v for k, v in tuned.items() if k not in ("inner_lr", "inner_steps")} == {
        k: v for k, v in setting.items() if k not in ("inner_lr", "inner_steps")
    }
