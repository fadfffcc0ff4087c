"""Compute-aware search: the cost cap (search.max_cost), rungs measured in compute, cost in the log and report."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import synthetic_trials as st
import test_fidelity as tf

from metahpo.errors import InputError
from metahpo.learners.cost import cheapest_macs, setting_macs, trained_iterations
from metahpo.learners.settings import apply_point, default_setting
from metahpo.learners.timing import fit_seconds, nonnegative_least_squares, predict
from metahpo.params import validate
from metahpo.reporting.pareto import pareto_front
from metahpo.search.driver import check_affordable
from metahpo.search.library_stage import library_plan
from metahpo.search.trial import TrialRequest, run_trial

from conftest import typed

CAP = 2.0
rung_params = tf.rung_params  # the fixture of the multi-fidelity tests
jobs, run = tf.jobs, tf.run


def cost_ratio(params: dict, point: dict) -> float:
    p = typed(params)
    return setting_macs(apply_point(p, point), p) / setting_macs(default_setting(p), p)


def test_compute_rungs_give_a_cheaper_setting_more_iterations(tiny_params):
    tiny_params["search"].update(fidelity="hyperband", min_iterations=5, fidelity_unit="compute")
    params = typed(tiny_params)
    base = default_setting(params)
    assert trained_iterations(base, params, 300) == 300
    half = {**base, "meta_batch_size": base["meta_batch_size"] // 5}  # a fifth of the tasks: a fifth of the cost
    assert trained_iterations(half, params, 300) == 1500
    costly = {**base, "inner_steps": 3, "hidden": 100}
    assert 1 <= trained_iterations(costly, params, 300) < 300
    assert trained_iterations(costly, params, 1) == 1  # never below one iteration
    tiny_params["search"]["fidelity_unit"] = "iterations"
    assert trained_iterations(costly, typed(tiny_params), 300) == 300


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fidelity_unit": "flops"}, "search.fidelity_unit: expected one of iterations, compute"),
        ({"fidelity_unit": "compute"}, "search.fidelity_unit: compute measures the rungs of a multi-fidelity"),
        ({"max_cost": 0}, "search.max_cost: expected a number > 0"),
        ({"max_cost": "3x"}, "search.max_cost: expected a number > 0"),
        ({"max_cost": 0.5, "start_from_default": True}, "search.max_cost: 0.5 is below the untuned setting's"),
    ],
)
def test_bad_cost_settings_name_the_key(tiny_params, changes, message):
    tiny_params["search"].update(changes)
    assert any(p.startswith(message) for p in validate(tiny_params)), validate(tiny_params)


def test_a_cap_below_the_cheapest_setting_is_refused_before_any_work(tiny_params):
    params = typed(tiny_params)
    floor = cheapest_macs(params) / setting_macs(default_setting(params), params)
    tiny_params["search"]["max_cost"] = floor * 0.99
    with pytest.raises(InputError, match=r"^params.yaml: search.max_cost: .* below the cheapest setting"):
        check_affordable(typed(tiny_params))
    tiny_params["search"]["max_cost"] = floor
    check_affordable(typed(tiny_params))


def test_costly_settings_are_logged_untrained_and_told_a_penalty(rung_params, tmp_path, monkeypatch):
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    rung_params["search"]["max_cost"] = CAP
    best, trials = run(rung_params, tmp_path)
    costly = trials[trials["status"] == "too_costly"]
    ratios = [cost_ratio(rung_params, json.loads(p)) for p in trials["point"]]
    assert len(costly) and all((r > CAP) == (s == "too_costly") for r, s in zip(ratios, trials["status"]))
    assert not {t for t, _, _ in jobs(tmp_path)} & set(costly["trial"])  # never trained
    assert (costly["rungs"].map(json.loads).map(len) == 0).all() and costly["objective"].isna().all()
    assert (costly["told"] >= math.log(10.0)).all()  # the failure penalty: the floor or the worst value at the rung
    assert cost_ratio(rung_params, best["point"]) <= CAP
    params = typed(rung_params)
    assert list(trials["cost_macs"]) == [
        setting_macs(apply_point(params, json.loads(p)), params) for p in trials["point"]
    ]
    # Without a cap the same first bracket trains its costly points.
    rung_params["search"]["max_cost"] = None
    _, uncapped = run(rung_params, tmp_path, name="uncapped")
    assert (
        uncapped.loc[uncapped["trial"].isin(costly["trial"]) & (uncapped["trial"] < 9), "status"] != "too_costly"
    ).all()


def test_a_killed_capped_search_resumes_to_the_same_log(rung_params, tmp_path, monkeypatch):
    rung_params["search"]["max_cost"] = CAP
    _, reference = run(rung_params, tmp_path, name="reference")
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        run(rung_params, tmp_path, trial_fn=st.Interrupt(7), name="s")
    _, resumed = run(rung_params, tmp_path, name="s")
    pd.testing.assert_frame_equal(resumed, reference)


def test_the_single_fidelity_search_refuses_costly_points_too(tiny_params, tmp_path):
    tiny_params["search"].update(n_calls=8, n_initial_points=4, workers=1, max_cost=CAP)
    tiny_params["search"]["space"] = {
        "hidden": {"type": "integer", "low": 10, "high": 100, "prior": "uniform"},
        "inner_lr": {"type": "real", "low": 0.001, "high": 1.0, "prior": "log-uniform"},
    }
    best, trials = run(tiny_params, tmp_path, trial_fn=st.bowl)
    # cost per point hidden^2 + 2 hidden against 40^2 + 80 for the untuned 40: at most 2x up to hidden 56
    assert (trials.loc[trials["hidden"] > 56, "status"] == "too_costly").all()
    assert (trials.loc[trials["hidden"] <= 56, "status"] == "ok").all() and best["point"]["hidden"] <= 56
    assert len(set(trials["status"])) == 2


@pytest.mark.parametrize("fidelity", ["successive_halving", "asha"])
def test_a_compute_rung_trial_continues_bit_identical_through_the_search(tiny_params, tmp_path, fidelity):
    """Real trials, rungs of 10 and 30 untuned-iterations in compute: each trial trains its own share of them."""
    tiny_params["search"].update(fidelity=fidelity, iterations=30, min_iterations=10, eta=3, n_calls=3,
                                 workers=1, fidelity_unit="compute")  # fmt: skip
    tiny_params["search"]["space"] = {
        "meta_batch_size": {"type": "categorical", "values": [5, 10, 50]},
        "inner_lr": {"type": "real", "low": 0.001, "high": 0.1, "prior": "log-uniform"},
    }
    params, data, best, trials = tf.search_real_trials(tiny_params, tmp_path)
    top = trials[trials["iterations"] == 30].iloc[0]
    point = json.loads(top["point"])
    request = TrialRequest(int(top["trial"]), point, int(top["seed"]), params, [(data["meta_train"], data["meta_val"])])
    first = run_trial(dataclasses.replace(request, stop_at=10))
    own = trained_iterations(apply_point(params, point), params, 10)
    assert {s["step"] for s in first.states.values()} == {own} and own == 10 * 25 // point["meta_batch_size"]
    assert json.loads(top["objectives"]) == run_trial(request).objectives and best["trial"] == top["trial"]
    if fidelity == "asha":  # a job costs its rung's compute: the plan's, and at most one last job more
        plan = library_plan(params.search)["compute"]
        assert plan <= trials["iterations"].sum() < plan + 30


def test_pareto_front_keeps_the_points_nothing_beats_in_cost_and_value():
    costs, values = [1.0, 2.0, 0.5, 3.0, 2.0, 0.5], [0.3, 0.2, 0.4, 0.25, 0.1, 0.5]
    assert pareto_front(costs, values) == [2, 0, 4]
    assert pareto_front([], []) == []


def test_nonnegative_least_squares_keeps_every_coefficient_at_or_above_zero():
    design = np.array([[1.0, 10, 2e6], [1.0, 30, 1e7], [1.0, 90, 9e6], [1.0, 20, 8e7]])
    exact = np.array([0.5, 0.01, 1e-9])
    assert nonnegative_least_squares(design, design @ exact) == pytest.approx(exact, rel=1e-6)
    fit = nonnegative_least_squares(design, design @ np.array([-0.5, 0.01, 1e-9]))  # unconstrained: below zero
    assert (fit >= 0).all() and fit[0] == 0


def test_training_time_is_predicted_from_the_search_trials(tiny_params, tmp_path, monkeypatch, capsys):
    """Trials that took 0.5 s + 10 ms per iteration + 1 ns per multiply-add predict the training at that rate."""
    params = typed(tiny_params)
    cost = setting_macs(default_setting(params), params)
    point = json.dumps({name: default_setting(params)[name] for name in params.search.space})
    trials = [(0, "ok", 15, cost), (1, "failed", 15, cost), (2, "stopped", 5, 3 * cost), (3, "ok", 40, 2 * cost)]
    folder = tmp_path / "reports/search"
    folder.mkdir(parents=True)
    with open(folder / "trials.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial", "status", "iterations", "cost_macs", "point"])
        writer.writerows([[t, s, i, c, point] for t, s, i, c in trials])
    took = {t: 0.5 + 0.01 * i + 1e-9 * i * c for t, _, i, c in trials}
    took[1] = 99.0  # a failed trial's seconds are not training
    (folder / "trial_seconds.csv").write_text("trial,seconds\n" + "".join(f"{t},{s}\n" for t, s in took.items()))
    monkeypatch.chdir(tmp_path)
    fit, count = fit_seconds(params)
    assert count == 3 and [fit[k] for k in ("per_validation", "per_iteration", "per_mac")] == pytest.approx(
        [0.5, 0.01, 1e-9], rel=1e-6
    )
    settings = {"tuned": {**default_setting(params), "hidden": 80}, "default": default_setting(params)}
    iterations = {"tuned": params.train.iterations, "default": params.train.iterations}
    predicted = predict(settings, iterations, params)["learners"]
    validations = params.train.iterations // params.train.log_every
    assert predicted["default"]["predicted_seconds"] == pytest.approx(
        0.5 * validations + params.train.iterations * (0.01 + 1e-9 * cost)
    )
    assert predicted["tuned"]["cost_vs_untuned"] > 3
    assert "default: predicted about" in capsys.readouterr().err
    (folder / "trial_seconds.csv").unlink()
    assert fit_seconds(params) == (None, 0)
    assert predict(settings, iterations, params)["learners"]["tuned"]["predicted_seconds"] is None
