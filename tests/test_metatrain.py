"""Meta-training: task sampling, determinism, divergence detection, and the real search objective."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from metahpo.errors import DivergenceError
from metahpo.learners.adaptation import adaptation_errors
from metahpo.learners.family import family_of, zero_predictor_mse
from metahpo.learners.memory import largest_settings, meta_step_bytes
from metahpo.learners.meta_learner import LearnerConfig
from metahpo.learners.metatrain import (
    FusedAdam,
    TrainSettings,
    build_learner,
    meta_train,
    multi_step_weights,
    on_cpu,
)
from metahpo.learners.settings import apply_point, default_setting, train_settings
from metahpo.search.driver import Search
from metahpo.search.trial import TrialRequest, TrialResult, merge_results, repeat_seeds, run_trial, split_request
from metahpo.tasks.sinusoid import TaskPool, generate_splits

from conftest import typed

CPU = torch.device("cpu")


@pytest.fixture
def splits(tiny_params):
    return generate_splits(typed(tiny_params).tasks, 0)


def _settings(iterations=15, outer_lr=1e-3, schedule="constant"):
    return TrainSettings(iterations, 4, outer_lr, schedule, 5, 5)


def test_sampled_batches_are_points_of_one_task_without_replacement(splits):
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    sx, sy, qx, qy = pool.sample(6, 5, 7, torch.Generator().manual_seed(0))
    assert sx.shape == (6, 5, 1) and qy.shape == (6, 7, 1)
    x = torch.cat([sx, qx], dim=1)
    for t in range(6):
        assert len(set(x[t, :, 0].tolist())) == 12  # distinct points
    # every sampled (x, y) pair is a point of the same stored task
    y = torch.cat([sy, qy], dim=1)
    for t in range(6):
        rows = [(pool.x[:, :, 0] == v).nonzero()[0, 0].item() for v in x[t, :, 0]]
        assert len(set(rows)) == 1
        stored = dict(zip(pool.x[rows[0], :, 0].tolist(), pool.y[rows[0], :, 0].tolist()))
        assert [stored[v] for v in x[t, :, 0].tolist()] == y[t, :, 0].tolist()


def test_meta_training_draws_the_query_points_of_its_setting(tiny_params, splits):
    tiny_params["meta"]["query"] = 7  # not tasks.query, so that the untuned budget shows which one it took
    params = typed(tiny_params)
    assert train_settings(default_setting(params), params, 3).query == 7
    budget = train_settings(apply_point(params, {"query": 3}), params, 4)
    drawn = []

    class CountingPool(TaskPool):
        def sample(self, batch, shots, query, generator):
            sx, sy, qx, qy = super().sample(batch, shots, query, generator)
            drawn.append((sx.shape[1], qx.shape[1]))
            return sx, sy, qx, qy

    pool = CountingPool.from_split(splits["meta_train"], CPU)
    meta_train(build_learner(LearnerConfig("maml", 8, 1, 0.01, 1), 0, CPU), pool, budget, seed=0)
    assert drawn == [(params.tasks.shots, 3)] * 4


def test_memory_estimate_follows_the_settings_query(tiny_params):
    params = typed(tiny_params)
    family = family_of(params)
    few, many = (apply_point(params, {"query": q}) for q in (2, 10))
    assert meta_step_bytes(few, **family.step_shape(few)) < meta_step_bytes(many, **family.step_shape(many))
    space = {"query": {"type": "integer", "low": 1, "high": 8, "prior": "uniform"}}
    assert [s["query"] for s in largest_settings(default_setting(params), space)] == [8]


def test_memory_guard_counts_every_local_worker(tiny_params, monkeypatch):
    """One meta-step fits in 80% of memory, two workers' steps at once do not: the guard names search.workers."""
    from metahpo.errors import InputError
    from metahpo.learners import memory

    params = typed(tiny_params)
    setting = default_setting(params)
    need = meta_step_bytes(setting, **family_of(params).step_shape(setting))
    monkeypatch.setattr(memory, "device_memory", lambda device: int(need / memory.USABLE_FRACTION * 1.5))
    memory.check_fits(setting, params, CPU, "search.space or search.workers")
    with pytest.raises(InputError, match=r"search.space or search.workers: .* times 2 workers"):
        memory.check_fits(setting, params, CPU, "search.space or search.workers", copies=2)


@pytest.mark.parametrize(
    ("algorithm", "schedule"),
    [("metasgd", "constant"), ("metasgd", "cosine"), ("cnp", "constant"), ("learned_optimizer", "constant")],
)
def test_same_seed_gives_bit_identical_weights(splits, algorithm, schedule):
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    states = []
    for _ in range(2):
        learner = build_learner(LearnerConfig(algorithm, 8, 2, 0.01, 2, representation=4, rule_hidden=3), 7, CPU)
        before = {k: v.clone() for k, v in learner.state_dict().items()}
        meta_train(learner, pool, _settings(schedule=schedule), seed=3)
        states.append(learner.state_dict())
    assert all(not torch.equal(before[k], v) for k, v in states[0].items())
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name])


def test_fused_adam_is_torchs_fused_adam_bit_for_bit():
    """Kept lists, a save and load mid-run, a cosine schedule and steps where one tensor has no gradient."""

    def run(kind: str) -> tuple[list[torch.Tensor], dict]:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(shape)) for shape in ((5, 3), (1, 3), (3, 1))]

        def make() -> torch.optim.Adam:
            return torch.optim.Adam(params, lr=1e-2, fused=True) if kind == "torch" else FusedAdam(params, 1e-2)

        optimizer = make()
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
        gradients = torch.Generator().manual_seed(1)
        for step in range(20):
            if step == 9:  # stop and continue, as a resumed search does
                state = on_cpu({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()})
                optimizer = make()
                schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
                optimizer.load_state_dict(state["optimizer"])
                schedule.load_state_dict(state["schedule"])
            if step == 14:  # a state loaded into an optimizer that has kept its lists
                optimizer.load_state_dict(on_cpu(optimizer.state_dict()))
            optimizer.zero_grad()
            for i, p in enumerate(params):
                if not (i == 1 and step % 4 == 3):
                    p.grad = torch.randn(p.shape, generator=gradients)
            optimizer.step()
            schedule.step()
        return [p.detach().clone() for p in params], optimizer.state_dict()

    (expected, expected_state), (got, got_state) = run("torch"), run("kept")
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    for i, state in expected_state["state"].items():
        assert all(torch.equal(state[k], got_state["state"][i][k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_training_changes_weights_and_logs(splits):
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    learner = build_learner(LearnerConfig("maml", 8, 1, 0.01, 1), 0, CPU)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    logged = []
    meta_train(learner, pool, _settings(iterations=20), 0, log_every=5, on_log=lambda s, v: logged.append((s, v)))
    assert [s for s, _ in logged] == [5, 10, 15, 20]
    assert all(v > 0 for _, v in logged)
    assert any(not torch.equal(before[k], v) for k, v in learner.state_dict().items())


def test_divergent_inner_loop_is_an_error_not_saved_weights(splits):
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    learner = build_learner(LearnerConfig("maml", 8, 2, 1.0e4, 5), 0, CPU)
    with pytest.raises(DivergenceError, match="meta-loss is (nan|inf)"):
        meta_train(learner, pool, _settings(iterations=40), 0)


def _search(params, splits, directory):
    manifest = directory.parent / "manifest.json"
    manifest.write_text("{}")
    data = {k: splits[k] for k in ("meta_train", "meta_val")}
    return Search(typed(params), data, zero_predictor_mse(splits["meta_val"]), directory, manifest)


def test_real_search_marks_divergent_trials_failed(tiny_params, splits, tmp_path):
    tiny_params["search"].update(n_calls=4, n_initial_points=2, workers=1)
    tiny_params["search"]["space"] = {"inner_lr": {"type": "categorical", "values": [0.01, 100.0]}}
    tiny_params["meta"]["inner_steps"] = 5
    best = _search(tiny_params, splits, tmp_path / "s").run()
    trials = pd.read_csv(tmp_path / "s/trials.csv")
    assert set(trials.loc[trials["status"] == "failed", "inner_lr"]) == {100.0}
    assert trials.loc[trials["status"] == "failed", "error"].str.contains("DivergenceError").all()
    assert set(trials.loc[trials["status"] == "ok", "inner_lr"]) == {0.01}
    assert best["point"]["inner_lr"] == 0.01


def _request(tiny_params, splits, medians):
    tiny_params["search"].update(iterations=40)
    tiny_params["search"]["median_stop"].update(enabled=True, checkpoints=4)
    data = [(splits["meta_train"], splits["meta_val"])]
    return TrialRequest(0, {"inner_lr": 0.01}, 5, typed(tiny_params), data, medians=medians)


def test_median_rule_stops_a_trial_above_the_median_and_records_where(tiny_params, splits):
    result = run_trial(_request(tiny_params, splits, medians=[1e-6, 1e-6, 1e-6]))
    assert result.status == "stopped" and result.stopped_at == 10 and len(result.curve) == 1
    assert result.objective == result.curve[0] and "median" in result.error


def test_median_rule_lets_a_good_trial_finish_with_its_curve(tiny_params, splits):
    result = run_trial(_request(tiny_params, splits, medians=[1e6, 1e6, 1e6]))
    assert result.status == "ok" and result.stopped_at == 0 and len(result.curve) == 4
    unchecked = run_trial(_request(tiny_params, splits, medians=None))
    assert unchecked.objective == result.objective  # checkpoints observe, never change the run


def test_repeat_seeds_start_with_the_trial_seed_and_are_distinct():
    assert repeat_seeds(7, 1) == [7]
    seeds = repeat_seeds(7, 4)
    assert seeds[0] == 7 and len(set(seeds)) == 4 and seeds == repeat_seeds(7, 4)


def test_repeats_train_one_learner_per_seed_and_score_the_mean(tiny_params, splits):
    tiny_params["search"].update(iterations=20)
    data = [(splits["meta_train"], splits["meta_val"])]
    single = run_trial(TrialRequest(0, {"inner_lr": 0.01}, 5, typed(tiny_params), data))
    tiny_params["search"]["repeats"] = 3
    repeated = run_trial(TrialRequest(0, {"inner_lr": 0.01}, 5, typed(tiny_params), data))
    assert repeated.status == "ok" and len(repeated.objectives) == 3
    assert repeated.objectives[0] == single.objective  # repeat 0 is the trial's own seed
    assert len(set(repeated.objectives)) == 3
    assert repeated.objective == pytest.approx(sum(repeated.objectives) / 3, rel=1e-12)


def test_a_diverging_repeat_fails_the_whole_trial(tiny_params, splits):
    tiny_params["search"].update(iterations=40, repeats=2)
    tiny_params["meta"]["inner_steps"] = 5
    data = [(splits["meta_train"], splits["meta_val"])]
    result = run_trial(TrialRequest(0, {"inner_lr": 10000.0}, 5, typed(tiny_params), data))
    assert result.status == "failed" and "DivergenceError" in result.error and math.isnan(result.objective)


def test_a_trial_split_into_its_trainings_gives_the_same_result(tiny_params, splits):
    """Each fold-and-repeat training runs as its own job; merged in order, they equal the whole trial."""
    tiny_params["search"].update(iterations=15, repeats=2)
    other = generate_splits(typed(tiny_params).tasks, 1)
    data = [(splits["meta_train"], splits["meta_val"]), (other["meta_train"], other["meta_val"])]
    request = TrialRequest(0, {"inner_lr": 0.01}, 5, typed(tiny_params), data)
    units = split_request(request)
    assert [u.trainings for u in units] == [(0,), (1,), (2,), (3,)]
    whole, merged = run_trial(request), merge_results([run_trial(u) for u in units])
    assert merged.status == whole.status == "ok" and len(set(whole.objectives)) == 4
    assert merged.objectives == whole.objectives and merged.objective == whole.objective
    tiny_params["search"]["repeats"] = 1
    single = TrialRequest(0, {"inner_lr": 0.01}, 5, typed(tiny_params), data[:1])
    assert split_request(single) == [single]


def test_merged_trial_fails_at_its_first_failed_training():
    parts = [
        TrialResult(3, "ok", 0.5, [0.5], seconds=1.0),
        TrialResult(3, "failed", math.nan, [], error="DivergenceError: boom", seconds=2.0),
        TrialResult(3, "ok", 0.7, [0.7], seconds=1.5),
    ]
    merged = merge_results(parts)
    assert merged.status == "failed" and merged.error == "DivergenceError: boom" and math.isnan(merged.objective)
    assert merged.objectives == [0.5] and merged.seconds == 4.5 and merged.trial == 3
    ok = merge_results([parts[0], parts[2]])
    assert ok.status == "ok" and ok.objectives == [0.5, 0.7] and ok.objective == pytest.approx(0.6)


def test_memory_estimate_grows_with_the_keys_each_algorithm_reads(tiny_params):
    params = typed(tiny_params)
    family = family_of(params)

    def need(**point):
        setting = apply_point(params, point)
        return meta_step_bytes(setting, **family.step_shape(setting))

    assert need(algorithm="cnp", representation=8) < need(algorithm="cnp", representation=64)
    assert need(algorithm="learned_optimizer", rule_hidden=4) < need(algorithm="learned_optimizer", rule_hidden=40)
    assert need(algorithm="maml", rule_hidden=4) == need(algorithm="maml", rule_hidden=40)
    assert need(algorithm="maml", rule_hidden=4) < need(algorithm="learned_optimizer", rule_hidden=4)
    space = {"algorithm": {"type": "categorical", "values": ["maml", "cnp"]}}
    assert [s["algorithm"] for s in largest_settings(default_setting(params), space)] == ["maml", "cnp"]


def test_multi_step_weights_anneal_from_equal_to_the_last_step():
    assert multi_step_weights(4, 0.0, 0.5) == [0.25, 0.25, 0.25, 0.25]
    middle = multi_step_weights(4, 0.25, 0.5)
    assert middle == pytest.approx([0.125, 0.125, 0.125, 0.625]) and sum(middle) == pytest.approx(1.0)
    assert multi_step_weights(4, 0.5, 0.5) is None  # annealed: the last step alone
    assert multi_step_weights(4, 0.0, 0.0) is None  # off
    assert multi_step_weights(1, 0.0, 1.0) is None  # one step: nothing to weight


def test_maml_plus_plus_options_change_training_and_a_stopped_run_continues_bit_identically(splits):
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    config = LearnerConfig("metasgd", 8, 2, 0.01, 2, inner_rates="lslr")
    options = dataclasses.replace(_settings(iterations=12), multi_step_loss=0.5, first_order_fraction=0.25)

    def trained(settings, stop=None):
        learner = build_learner(config, 7, CPU)
        if stop is None:
            meta_train(learner, pool, settings, seed=3)
        else:
            state = meta_train(learner, pool, settings, seed=3, stop_at=stop)
            meta_train(learner, pool, settings, seed=3, state=state)
        return learner.state_dict()

    whole, parts, plain = trained(options), trained(options, stop=5), trained(_settings(iterations=12))
    assert whole["inner_lrs.w0"].shape == (2, 1, 8)
    assert all(torch.equal(whole[k], parts[k]) for k in whole)
    assert not torch.equal(whole["weights.w0"], plain["weights.w0"])


def test_the_objective_is_the_worse_of_one_step_and_the_stable_steps(tiny_params, splits):
    learner = build_learner(LearnerConfig("maml", 8, 2, 0.02, 1), 7, CPU)
    val = splits["meta_val"]
    tiny_params["search"].update(objective_steps=1, stable_steps=0)
    one_step = family_of(typed(tiny_params)).objective(learner, val, 1, CPU)
    tiny_params["search"]["stable_steps"] = 6
    guarded = family_of(typed(tiny_params)).objective(learner, val, 1, CPU)
    shots = typed(tiny_params).tasks.shots
    per_step = adaptation_errors(learner, val, 6, len(val["support_x"]), CPU, shots)["grid"].mean(axis=1)
    assert one_step == pytest.approx(per_step[1]) and guarded == pytest.approx(max(per_step[1], per_step[6]))
    # A learner whose adaptation blows up past its first step has no objective (the trial fails).
    wild = build_learner(LearnerConfig("maml", 8, 2, 5.0, 1), 7, CPU)
    assert math.isnan(family_of(typed(tiny_params)).objective(wild, val, 1, CPU))
    tiny_params["search"]["stable_steps"] = 0
    assert math.isfinite(family_of(typed(tiny_params)).objective(wild, val, 1, CPU))
