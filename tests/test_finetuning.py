"""The pretrained baseline's own fine-tuning rule, rate and steps: the best of a grid, on meta_val only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metahpo import paths
from metahpo.learners import training
from metahpo.learners.adaptation import adaptation_errors
from metahpo.learners.family import family_of
from metahpo.learners.finetuning import choose_finetuning, finetuning_rates, with_rate
from metahpo.learners.meta_learner import LearnerConfig
from metahpo.learners.metatrain import build_learner
from metahpo.learners.settings import default_setting, learner_config
from metahpo.tasks.generate import generate_stage
from metahpo.tasks.sinusoid import generate_splits

from conftest import IMAGE_TASKS, typed

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def params():
    from conftest import load_default_params, shrink

    return typed(shrink(load_default_params()))


@pytest.fixture(scope="module")
def val(params):
    return generate_splits(params.tasks, params.seed)["meta_val"]


def grid_mse(val, shots):
    return lambda learner, steps: adaptation_errors(learner, val, steps, 4, CPU, shots)["grid"].mean(axis=1)


def test_the_choice_is_the_grid_minimum_of_the_score(params, val):
    learner = build_learner(LearnerConfig("maml", 16, 2, 0.01, 1), 0, CPU)
    finetune = dataclasses.replace(params.train.finetune, lr=[0.001, 0.3], lr_points=5, max_steps=3)
    score = grid_mse(val, params.tasks.shots)
    chosen = choose_finetuning(learner, finetune, score, CPU)
    rates = finetuning_rates(finetune)
    assert chosen["grid"]["inner_lr"] == rates and chosen["grid"]["inner_steps"] == [1, 2, 3]
    table = np.array([score(with_rate(learner, r, CPU), 3)[1:] for r in rates])
    np.testing.assert_allclose(chosen["grid"]["val_score"], table, rtol=1e-6)
    i, j = np.unravel_index(table.argmin(), table.shape)
    assert (chosen["inner_lr"], chosen["inner_steps"]) == (rates[i], j + 1)
    assert chosen == choose_finetuning(learner, finetune, score, CPU)  # deterministic
    assert learner.config.inner_lr == 0.01  # the learner itself is left as it was


def test_a_diverging_rate_is_recorded_as_null_and_never_chosen(params, val):
    learner = build_learner(LearnerConfig("maml", 16, 2, 0.01, 1), 0, CPU)
    finetune = dataclasses.replace(params.train.finetune, lr=[0.01, 100.0], lr_points=5, max_steps=3)
    chosen = choose_finetuning(learner, finetune, grid_mse(val, params.tasks.shots), CPU)
    assert any(v is None for row in chosen["grid"]["val_score"] for v in row)
    assert np.isfinite(chosen["val_score"]) and chosen["inner_lr"] < 100.0


def image_params():
    from conftest import load_default_params, shrink

    raw = shrink(load_default_params())
    raw["tasks"].update({k: v for k, v in IMAGE_TASKS.items() if k != "splits"})
    raw["tasks"]["splits"].update(IMAGE_TASKS["splits"])
    raw["meta"]["query"] = 3
    return typed(raw)


@pytest.mark.parametrize("family", ["sinusoid", "digits"])
def test_the_fine_tuning_reads_meta_val_and_nothing_held_out(params, tmp_path, monkeypatch, family):
    params = params if family == "sinusoid" else image_params()
    monkeypatch.chdir(tmp_path)
    generate_stage(params, CPU)
    for held_out in ("meta_test", "meta_ood"):  # gone: reading them would fail
        (paths.TASKS / f"{held_out}.npz").unlink(missing_ok=True)
    read = []

    def load_split(root, name):
        read.append(name)
        return original(root, name)

    original = training.load_split
    monkeypatch.setattr(training, "load_split", load_split)
    setting = default_setting(params)
    config = learner_config(setting, params)
    if family == "digits":  # pretrained on every meta_train class, as the train stage does
        config = dataclasses.replace(config, outputs=config.outputs + 3)
    pretrained = build_learner(config, 3, CPU)
    tuned, record, weights = training.tune_pretrained(pretrained.state_dict(), setting, params, CPU)
    assert read == ["meta_val"]
    assert record["chosen_on"] == "meta_val"
    assert set(record["grid"]["val_score"]) == set(family_of(params).finetune_algorithms)
    assert [tuned[k] for k in ("algorithm", "inner_lr", "inner_steps")] == [
        record[k] for k in ("algorithm", "inner_lr", "inner_steps")
    ]
    kept = ("hidden", "layers", "outer_lr", "meta_batch_size", "query", "outer_schedule")
    assert {k: tuned[k] for k in kept} == {k: setting[k] for k in kept}
    # The saved learner rebuilds from the tuned setting and the returned weights.
    build_learner(learner_config(tuned, params), 0, CPU).load_state_dict(weights)


def test_a_classifier_is_pretrained_on_every_class_and_fine_tuned_from_a_zero_head(tmp_path, monkeypatch):
    params = image_params()
    monkeypatch.chdir(tmp_path)
    generate_stage(params, CPU)
    family = family_of(params)
    from metahpo.tasks.storage import load_split

    pool = family.make_pool(load_split(paths.TASKS, "meta_train"), CPU, joint=True)
    classes = family.pretrain_outputs(pool)
    assert classes > params.tasks.ways
    _, labels, _, query_labels = pool.sample(4, 1, 2, torch.Generator().manual_seed(0))
    assert labels.max() >= params.tasks.ways or query_labels.max() >= params.tasks.ways  # the classes' own indices
    config = dataclasses.replace(learner_config(default_setting(params), params), outputs=classes)
    weights = family.fresh_head(build_learner(config, 0, CPU).state_dict())
    head = [n for n, w in weights.items() if w.shape[-1] == params.tasks.ways]
    assert head == ["weights.b2", "weights.w2"] and all(not weights[n].any() for n in head)
    assert all(w.shape[-1] != classes for w in weights.values())
