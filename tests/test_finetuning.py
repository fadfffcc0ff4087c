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
from metahpo.learners.finetuning import choose_finetuning, finetuning_rates, halving_rungs, with_rate
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
    """Per-task grid MSE of the tasks ``part`` of ``val``, as the regression family scores them."""

    def score(learner, steps, part):
        tasks = {k: v if k == "grid_x" else v[part] for k, v in val.items()}
        return adaptation_errors(learner, tasks, steps, 4, CPU, shots)["grid"]

    return score


def test_the_full_grid_is_its_minimum_and_the_race_scores_its_winner_on_every_task(params, val):
    learner = build_learner(LearnerConfig("maml", 16, 2, 0.01, 1), 0, CPU)
    finetune = params.train.finetune.model_copy(update=dict(lr=[0.001, 0.3], lr_points=5, max_steps=3, eta=1))
    score, n = grid_mse(val, params.tasks.shots), len(val["support_x"])
    chosen = choose_finetuning({"maml": learner}, finetune, score, n, CPU)
    rates = finetuning_rates(finetune)
    assert chosen["grid"]["inner_lr"] == rates and chosen["grid"]["inner_steps"] == [1, 2, 3]
    table = np.array([score(with_rate(learner, r, CPU), 3, slice(0, n))[1:].mean(axis=1) for r in rates])
    np.testing.assert_allclose(chosen["grid"]["val_score"]["maml"], table, rtol=1e-6)
    assert chosen["grid"]["episodes"]["maml"] == [n] * 5
    i, j = np.unravel_index(table.argmin(), table.shape)
    assert (chosen["algorithm"], chosen["inner_lr"], chosen["inner_steps"]) == ("maml", rates[i], j + 1)
    assert chosen == choose_finetuning({"maml": learner}, finetune, score, n, CPU)  # deterministic
    assert learner.config.inner_lr == 0.01  # the learner itself is left as it was
    raced = choose_finetuning({"maml": learner}, finetune.model_copy(update={"eta": 3}), score, n, CPU)
    seen = raced["grid"]["episodes"]["maml"]
    assert sorted(seen) == [-(-n // 9)] * 3 + [-(-n // 3)] + [n]  # 5 arms on n/9, the best 2 on n/3, 1 on all
    # The race's winner: the best on the third of the tasks of the two arms that got there, scored on all of them.
    third = slice(0, -(-n // 3))
    finalists = [k for k, v in enumerate(seen) if v >= third.stop]
    on_third = {k: score(with_rate(learner, rates[k], CPU), 3, third)[1:].mean(axis=1).min() for k in finalists}
    k = rates.index(raced["inner_lr"])
    assert seen[k] == n and on_third[k] == min(on_third.values())
    assert raced["val_score"] == pytest.approx(table[k].min(), rel=1e-6) and raced["val_score"] >= table.min()
    assert raced["inner_steps"] == int(table[k].argmin()) + 1


def test_halving_rungs():
    assert halving_rungs(26, 200, 3) == [(26, 8), (9, 23), (3, 67), (1, 200)]
    assert halving_rungs(26, 200, 1) == [(26, 200)]
    assert halving_rungs(3, 10, 3) == [(3, 4), (1, 10)]
    assert halving_rungs(1, 10, 3) == [(1, 10)]
    assert halving_rungs(26, 5, 3) == [(26, 1), (9, 1), (3, 2), (1, 5)]


def test_halving_costs_a_fraction_of_the_grid_and_scores_each_episode_once(params, val):
    """With 2 rules x 13 rates, the race adapts about an eighth of the episodes the full grid does."""
    learners = {a: build_learner(LearnerConfig(a, 16, 2, 0.01, 1), 0, CPU) for a in ("anil", "maml")}
    adapted = []

    def score(learner, steps, part):
        adapted.append((learner.config.algorithm, learner.config.inner_lr, part.start, part.stop))
        return grid_mse(val, params.tasks.shots)(learner, steps, part)

    n = len(val["support_x"])
    chosen = choose_finetuning(learners, params.train.finetune, score, n, CPU)
    spent = sum(stop - start for *_, start, stop in adapted)
    assert spent <= 0.13 * 26 * n
    for arm in {(a, r) for a, r, *_ in adapted}:  # an arm's rungs cover consecutive, disjoint episodes
        parts = [(start, stop) for a, r, start, stop in adapted if (a, r) == arm]
        assert parts[0][0] == 0 and all(b[0] == a[1] for a, b in zip(parts, parts[1:]))
    assert sum(v == n for row in chosen["grid"]["episodes"].values() for v in row) == 1
    best = [(r, a) for r, a in zip(chosen["grid"]["inner_lr"], chosen["grid"]["episodes"][chosen["algorithm"]])]
    assert dict(best)[chosen["inner_lr"]] == n


def test_a_diverging_rate_is_recorded_as_null_and_never_chosen(params, val):
    learner = build_learner(LearnerConfig("maml", 16, 2, 0.01, 1), 0, CPU)
    finetune = params.train.finetune.model_copy(update=dict(lr=[0.01, 100.0], lr_points=5, max_steps=3))
    chosen = choose_finetuning(
        {"maml": learner}, finetune, grid_mse(val, params.tasks.shots), len(val["support_x"]), CPU
    )
    assert any(v is None for row in chosen["grid"]["val_score"]["maml"] for v in row)
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
    # Plain SGD, as it was chosen: each of its steps is its own (a safeguard would change what was chosen).
    assert setting["extra_steps"] == "safeguarded" and tuned["extra_steps"] == "plain"
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


@pytest.mark.parametrize("raced", [True, False])
def test_the_report_says_when_the_grid_was_raced(tmp_path, monkeypatch, raced):
    import json

    from metahpo.reporting.tables import finetuning_text

    monkeypatch.chdir(tmp_path)
    seen = [[8, 200], [8, 23]] if raced else [[200, 200], [200, 200]]
    grid = {"inner_lr": [0.001, 1.0], "inner_steps": [1, 2, 3], "val_score": {"anil": [], "maml": []},
            "episodes": dict(zip(("anil", "maml"), seen))}  # fmt: skip
    record = {"adapts": "the head only", "inner_lr": 0.1, "inner_steps": 3, "score": "error", "val_score": 0.1}
    (tmp_path / "models/pretrained").mkdir(parents=True)
    (tmp_path / "models/pretrained/config.json").write_text(json.dumps({"finetuning": {**record, "grid": grid}}))
    text = finetuning_text()
    assert ("raced by successive halving" in text) == raced and "2 rules" in text
    assert not raced or "scored on all 200, the first arms dropped after 8" in text
