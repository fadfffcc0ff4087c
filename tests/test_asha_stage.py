"""The search stage run by the search library: search.fidelity: asha and search.method: tpe."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest
import synthetic_trials as st
from test_fidelity import jobs
from test_fidelity import run as run_search
from test_search_pipeline import RUNGS, _real_search, _rungs_logged, _search_project, data_dir  # noqa: F401

from metahpo.errors import InputError
from metahpo.params import validate
from metahpo.search.library_stage import library_plan

from conftest import two_dimension_rungs, typed
from project import commit_all, copy_project, dvc, kill_search_when, run


@pytest.fixture
def asha_params(tiny_params):
    return two_dimension_rungs(tiny_params, "asha")


def test_asha_decides_per_job_and_continues_each_rung(asha_params, tmp_path, monkeypatch):
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    best, trials = run_search(asha_params, tmp_path)
    rungs = trials["rungs"].map(json.loads)
    assert set(trials["status"]) == {"ok", "stopped"}
    assert (trials.loc[trials["status"] == "ok", "iterations"] == 900).all()
    assert (trials.loc[trials["status"] == "stopped", "iterations"] < 900).all()
    for reached in rungs:
        assert list(reached) == ["100", "300", "900"][: len(reached)]
    assert best["objective"] == trials.loc[trials["status"] == "ok", "objective"].min()
    # Each (trial, rung) ran once; a later rung continues where the trial's previous rung stopped.
    ran = jobs(tmp_path)
    assert len(ran) == len(set(ran)) == sum(rungs.map(len))
    for trial in {t for t, _, _ in ran}:
        mine = sorted((stop, start) for t, start, stop in ran if t == trial)
        assert [start for _, start in mine] == [0] + [stop for stop, _ in mine[:-1]]
    # The compute: the hyperband plan of 20 trials (9 + 5 + 3 trials, then 9), each at the space's mean cost.
    plan = library_plan(typed(asha_params).search)
    assert plan["compute"] == 9 * 100 + 3 * 200 + 600 + 5 * 300 + 1 * 600 + 3 * 900 + 9 * 100 + 3 * 200 + 600
    baseline = typed_baseline(asha_params)
    spent = (trials["iterations"] * trials["cost_macs"] / baseline).sum()
    priced = library_plan(typed(asha_params).search, lambda s: s["hidden"] / 40, 0)  # a linear cost
    assert priced["compute"] == plan["compute"] * priced["mean_cost"] and 1.0 < priced["mean_cost"] < 1.6
    # Jobs start until the compute is committed, each priced at its own cost: at most one job more.
    most = 900 * trials["cost_macs"].max() / baseline
    assert plan_of_stage(asha_params) <= spent < plan_of_stage(asha_params) + most
    assert not (tmp_path / "s/checkpoints").exists()


@pytest.mark.parametrize("start_from_default", [False, True])
def test_two_runs_with_two_workers_give_bit_identical_logs(asha_params, tmp_path, start_from_default):
    asha_params["search"].update(workers=2, start_from_default=start_from_default)
    run_search(asha_params, tmp_path, trial_fn=st.rung_bowl, name="a")
    run_search(asha_params, tmp_path, trial_fn=st.rung_bowl, name="b")
    assert (tmp_path / "a/trials.csv").read_bytes() == (tmp_path / "b/trials.csv").read_bytes()
    assert (tmp_path / "a/state.json").read_bytes() == (tmp_path / "b/state.json").read_bytes()


def test_a_worker_lost_under_two_workers_is_retried_and_the_log_unchanged(asha_params, tmp_path, monkeypatch):
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    asha_params["search"].update(workers=2, retries=1)
    run_search(asha_params, tmp_path, trial_fn=st.bowl, name="plain")
    run_search(asha_params, tmp_path, trial_fn=st.dies_once_on_trial_1, name="lost")
    assert (tmp_path / "died").exists()  # trial 1's worker did die once, and broke the pool
    assert (tmp_path / "plain/trials.csv").read_bytes() == (tmp_path / "lost/trials.csv").read_bytes()


@pytest.mark.parametrize(("jobs_before_kill", "start_from_default"), [(5, False), (14, False), (5, True)])
def test_an_interrupted_asha_search_reuses_every_finished_job(
    asha_params, tmp_path, monkeypatch, jobs_before_kill, start_from_default
):
    asha_params["search"]["start_from_default"] = start_from_default
    (tmp_path / "reference_jobs").mkdir()
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path / "reference_jobs"))
    _, reference = run_search(asha_params, tmp_path, name="reference")
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        run_search(asha_params, tmp_path, trial_fn=st.Interrupt(jobs_before_kill), name="s")
    assert len(jobs(tmp_path)) == jobs_before_kill and (tmp_path / "s/trials.csv").exists()
    _, resumed = run_search(asha_params, tmp_path, name="s")
    pd.testing.assert_frame_equal(resumed, reference)
    # Together the two runs trained exactly the uninterrupted run's jobs: none twice, promotions continued.
    assert sorted(jobs(tmp_path)) == sorted(jobs(tmp_path / "reference_jobs"))
    assert (tmp_path / "s/trials.csv").read_bytes() == (tmp_path / "reference/trials.csv").read_bytes()


@pytest.mark.parametrize("fidelity", ["asha", "hyperband", "none"])
def test_tpe_runs_through_the_stage(asha_params, tmp_path, fidelity):
    asha_params["search"].update(method="tpe", fidelity=fidelity, n_calls=20 if fidelity == "asha" else 9)
    best, trials = run_search(asha_params, tmp_path)
    assert best["trial"] in set(trials.loc[trials["status"] == "ok", "trial"])
    assert len({(p["inner_lr"], p["hidden"]) for p in trials["point"].map(json.loads)}) == len(trials)
    if fidelity != "asha":  # whole brackets of the params' plan (hyperband: 9 trials from 100 iterations)
        assert len(trials) == 9 and (fidelity == "none") == (trials["status"] == "ok").all()


def test_too_little_compute_for_the_last_rung_is_refused_naming_the_key(asha_params, tmp_path, monkeypatch):
    import metahpo.search.library_stage as library_stage

    with monkeypatch.context() as patch:  # a plan of 600 trial-iterations: six trials of the first rung
        patch.setattr(library_stage, "planned_iterations", lambda plan, rungs, eta: 600)
        with pytest.raises(InputError, match="^params.yaml: search.n_calls: 20 gives asha too little compute"):
            run_search(asha_params, tmp_path)
    assert (tmp_path / "s/checkpoints").exists()  # kept for the rerun to continue
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    _, trials = run_search(asha_params, tmp_path)  # the finished jobs are reused
    ran = jobs(tmp_path)
    assert len(ran) < trials["rungs"].map(json.loads).map(len).sum()
    assert all(start == 0 for _, start, stop in ran if stop == 100)
    assert any(start == 100 for _, start, _ in ran)  # a promotion continued from the first run's checkpoint


def test_failed_jobs_are_never_promoted_nor_best(asha_params, tmp_path):
    best, trials = run_search(asha_params, tmp_path, trial_fn=st.rung_bowl_failing_high_lr)
    failed = trials[trials["status"] == "failed"]
    assert len(failed) and (failed["inner_lr"] > 0.3).all() and (failed["iterations"] == 100).all()
    assert failed["objective"].isna().all() and failed["error"].str.startswith("DivergenceError").all()
    assert trials.loc[trials["trial"] == best["trial"], "inner_lr"].item() <= 0.3


def test_settings_above_max_cost_are_never_proposed_nor_logged(asha_params, tmp_path):
    asha_params["search"]["space"]["hidden"].update(low=20, high=200)
    asha_params["search"]["max_cost"] = 2.0  # the untuned width is 40: about width 57 and below
    _, trials = run_search(asha_params, tmp_path)
    assert "too_costly" not in set(trials["status"])
    assert trials["cost_macs"].max() <= 2.0 * typed_baseline(asha_params)


@pytest.mark.parametrize("method", ["gp", "tpe"])
def test_asha_starts_from_the_untuned_setting_and_measures_rungs_in_compute(asha_params, tmp_path, method):
    # The untuned learner is a CNP, which reads no inner rate: trial 0 has it pinned to its lowest value.
    asha_params["search"].update(start_from_default=True, fidelity_unit="compute", max_cost=2.0, method=method)
    asha_params["search"]["space"]["algorithm"] = {"type": "categorical", "values": ["maml", "cnp"]}
    asha_params["meta"].update(algorithm="cnp", inner_lr=0.5)
    params = typed(asha_params)
    best, trials = run_search(asha_params, tmp_path)
    assert json.loads(trials["point"][0]) == {"algorithm": "cnp", "inner_lr": 0.001, "hidden": params.model.hidden}
    assert "too_costly" not in set(trials["status"])  # a cost cap is a constraint of the proposals
    assert (trials["cost_macs"] / typed_baseline(asha_params) <= 2.0).all()
    # A rung of compute costs its compute whatever the setting: the plan of 20 trials, at most one job more.
    plan = library_plan(params.search, lambda s: 1e9, params.seed)
    assert plan["compute"] == library_plan(params.search)["compute"] and plan["mean_cost"] == 1.0
    spent = trials["iterations"].sum()
    assert plan["compute"] <= spent < plan["compute"] + 900
    assert set(trials["iterations"]) <= {100, 300, 900} and best["objective"] == trials.loc[
        trials["iterations"] == 900, "objective"].min()  # fmt: skip


def plan_of_stage(raw: dict) -> float:
    """The compute the stage gives ``minimize``: the plan priced with the stage's own cost of a setting."""
    from metahpo.learners.cost import setting_macs
    from metahpo.learners.settings import apply_point

    params = typed(raw)
    baseline = typed_baseline(raw)
    price = lambda s: setting_macs(apply_point(params, s), params) / baseline  # noqa: E731
    return library_plan(params.search, price, params.seed)["compute"]


def typed_baseline(raw: dict) -> int:
    from metahpo.learners.cost import setting_macs
    from metahpo.learners.settings import default_setting

    params = typed(raw)
    return setting_macs(default_setting(params), params)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"method": "forest"}, "search.method: forest does not run with search.fidelity: asha; expected one of gp"),
        ({"method": "grid"}, "search.method: grid does not run with search.fidelity: asha"),
        ({"method": "tpe", "fidelity": "none", "median_stop": {"enabled": True, "checkpoints": 4, "min_trials": 5}},
         "search.median_stop.enabled: the median rule does not run with search.method: tpe"),
        ({"n_calls": 0}, "search.n_calls:"),  # the compute: the hyperband plan of n_calls trials
        ({"method": "bohb"}, "search.method: expected one of gp, forest, random, grid, tpe"),
    ],
)  # fmt: skip
def test_what_the_library_does_not_run_is_refused_naming_the_key(asha_params, update, message):
    asha_params["search"].update(update)
    found = validate(asha_params)
    assert any(p.startswith(message) for p in found), found


def test_tpe_without_optuna_is_refused_naming_the_key(asha_params, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    asha_params["search"]["method"] = "tpe"
    assert "search.method: tpe needs optuna (pip install -c constraints.txt 'metahpo[tpe]')" in validate(asha_params)


# --- the real trial function, the executors and DVC (e2e) --------------------------------------------------


SMALL_SPACE = {
    "inner_lr": {"type": "real", "low": 0.001, "high": 0.1, "prior": "log-uniform"},
    "hidden": {"type": "integer", "low": 20, "high": 60, "prior": "uniform"},
}


@pytest.mark.e2e
def test_real_asha_logs_are_identical_twice_and_on_dask(tiny_params, data_dir, tmp_path):  # noqa: F811
    """Real trials, rungs of 10, 30 and 90 iterations, two workers: local pool twice, then a Dask LocalCluster."""
    tiny_params["search"].update(n_calls=9, n_initial_points=3, workers=2, **{**RUNGS, "fidelity": "asha"})
    tiny_params["search"]["space"] = SMALL_SPACE
    best = _real_search(tiny_params, data_dir, tmp_path / "a")
    _real_search(tiny_params, data_dir, tmp_path / "b")
    tiny_params["search"].update(executor="dask", address=None)
    assert _real_search(tiny_params, data_dir, tmp_path / "dask") == best
    log = (tmp_path / "a/trials.csv").read_bytes()
    assert log == (tmp_path / "b/trials.csv").read_bytes() == (tmp_path / "dask/trials.csv").read_bytes()
    trials = pd.read_csv(tmp_path / "a/trials.csv")
    assert (trials["status"] == "ok").any() and (trials["status"] == "stopped").any()


@pytest.mark.e2e
def test_a_killed_asha_stage_resumes_to_the_uninterrupted_log(tiny_params, tmp_path):
    rungs = {**RUNGS, "fidelity": "asha", "iterations": 270, "min_iterations": 30}
    tiny_params["search"].update(n_calls=9, n_initial_points=3, workers=1, **rungs)
    tiny_params["search"]["space"] = SMALL_SPACE
    reference = _search_project(tmp_path / "reference", tiny_params)
    run(reference, sys.executable, "stages/search.py")
    root = _search_project(tmp_path / "killed", tiny_params)
    log = root / "reports/search/trials.csv"
    kill_search_when(root, lambda: _rungs_logged(log) >= 4)
    before = _rungs_logged(log)
    assert before >= 4
    resumed = run(root, sys.executable, "stages/search.py")
    replayed = int(resumed.stderr.split(" jobs replayed from the log")[0].rsplit(" ", 1)[-1])
    assert replayed >= before
    for name in ("trials.csv", "best.json"):
        assert (root / "reports/search" / name).read_bytes() == (reference / "reports/search" / name).read_bytes()


@pytest.mark.e2e
def test_train_and_report_accept_an_asha_log(tiny_params, tmp_path):
    tiny_params["search"].update(n_calls=3, n_initial_points=2, iterations=30, min_iterations=10, eta=3)
    tiny_params["search"]["space"]["inner_lr"]["high"] = 0.1
    root = copy_project(tmp_path, tiny_params)
    commit_all(root, "tiny project")
    dvc(root, "exp", "run", "-S", "search.fidelity=asha", "report")
    trials = pd.read_csv(root / "reports/search/trials.csv")
    assert set(trials["status"]) <= {"ok", "stopped"} and (trials["status"] == "ok").any()
    assert "asha" in (root / "reports/report.md").read_text()
    assert not math.isnan(json.loads((root / "reports/search/best.json").read_text())["objective"])
