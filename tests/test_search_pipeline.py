"""The real search stage: Dask against local processes, kill and resume, every method through DVC."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from metahpo.evaluation.panels import learner_curve
from metahpo.learners.family import zero_predictor_mse
from metahpo.search.driver import Search
from metahpo.tasks.sinusoid import generate_splits
from metahpo.tasks.storage import save_splits

from conftest import typed
from project import commit_all, copy_project, dvc, kill_search_when, run, write_params

pytestmark = pytest.mark.e2e


@pytest.fixture
def data_dir(tmp_path, tiny_params):
    save_splits(tmp_path / "tasks", generate_splits(typed(tiny_params).tasks, 0), typed(tiny_params).tasks, 0)
    return tmp_path / "tasks"


def _real_search(params, data_dir, out):
    from metahpo.tasks.storage import load_split

    data = {name: load_split(data_dir, name) for name in ("meta_train", "meta_val")}
    return Search(typed(params), data, zero_predictor_mse(data["meta_val"]), out, data_dir / "manifest.json").run()


def test_dask_local_cluster_gives_the_same_trial_log_as_local_processes(tiny_params, data_dir, tmp_path):
    tiny_params["search"].update(n_calls=4, n_initial_points=2, workers=2)
    best_local = _real_search(tiny_params, data_dir, tmp_path / "local")
    tiny_params["search"].update(executor="dask", address=None)
    best_dask = _real_search(tiny_params, data_dir, tmp_path / "dask")
    assert (tmp_path / "local/trials.csv").read_bytes() == (tmp_path / "dask/trials.csv").read_bytes()
    assert best_local == best_dask


def _search_project(root, params):
    copy_project(root, params)
    run(root, sys.executable, "stages/generate.py")
    return root


def test_killed_search_resumes_without_rerunning_finished_trials(tiny_params, tmp_path):
    tiny_params["search"].update(n_calls=8, n_initial_points=3, workers=1, iterations=300)
    reference = _search_project(tmp_path / "reference", tiny_params)
    run(reference, sys.executable, "stages/search.py")

    root = _search_project(tmp_path / "killed", tiny_params)
    log = root / "reports/search/trials.csv"
    kill_search_when(root, lambda: log.exists() and len(log.read_text().splitlines()) >= 4)
    finished = len(pd.read_csv(log))
    assert 3 <= finished < 8
    seconds_before = pd.read_csv(root / "reports/search/trial_seconds.csv")

    resumed = run(root, sys.executable, "stages/search.py")
    assert f"{finished} finished trials" in resumed.stderr
    seconds_after = pd.read_csv(root / "reports/search/trial_seconds.csv")
    # Not rerun: the same timings. The kill may fall between the log's two files, so the timings file can
    # hold one trial fewer than the trial log.
    assert len(seconds_before) in (finished - 1, finished)
    pd.testing.assert_frame_equal(seconds_after[: len(seconds_before)], seconds_before)
    for name in ("trials.csv", "best.json"):
        assert (root / "reports/search" / name).read_bytes() == (reference / "reports/search" / name).read_bytes()


# Through DVC, the model-based default and the grid (a finite proposer); every method's own search is tested in
# process (tests/test_search.py::test_every_method_logs_every_trial_and_returns_the_best).
@pytest.mark.parametrize("method", ["gp", "grid"])
def test_every_method_runs_through_dvc_repro(tiny_params, tmp_path, method):
    tiny_params["search"].update(method=method, n_calls=4, n_initial_points=2, grid_points=2)
    tiny_params["search"]["space"]["inner_lr"]["high"] = 0.1  # no trial diverges, so every status is ok
    root = copy_project(tmp_path, tiny_params)
    dvc(root, "repro", "search")
    trials = pd.read_csv(root / "reports/search/trials.csv")
    best = json.loads((root / "reports/search/best.json").read_text())
    assert len(trials) == 4 and (trials["status"] == "ok").all()
    assert best["objective"] == trials["objective"].min()
    write_params(root, {**tiny_params, "search": {**tiny_params["search"], "n_calls": 5}})
    extended = dvc(root, "repro", "search")
    assert "4 finished trials" in extended.stderr + extended.stdout
    assert len(pd.read_csv(root / "reports/search/trials.csv")) == 5


def test_a_search_that_keeps_the_baseline_trains_it_once_in_any_number_of_workers(tiny_params, tmp_path):
    tiny_params["search"].update(n_calls=2, n_initial_points=1, workers=1, repeats=2, start_from_default=True)
    root = _search_project(tmp_path / "p", tiny_params)
    run(root, sys.executable, "stages/search.py")
    trials = pd.read_csv(root / "reports/search/trials.csv")
    assert trials["objective"][0] == pytest.approx(sum(json.loads(trials["objectives"][0])) / 2, rel=1e-12)
    # Make the baseline the winner, then train: one training serves both learners.
    best = json.loads((root / "reports/search/best.json").read_text())
    default = json.loads(trials["point"][0])
    best.update(trial=0, point=default, setting={**best["setting"], **default})
    (root / "reports/search/best.json").write_text(json.dumps(best))
    commit_all(root, "searched")  # DVCLive reads the git head
    proc = run(root, sys.executable, "stages/train.py")
    assert "default: same setting as tuned, reusing its weights" in proc.stderr
    assert (root / "models/tuned/model.pt").read_bytes() == (root / "models/default/model.pt").read_bytes()
    logs = root / "reports/train"
    assert (logs / "tuned/metrics.json").read_bytes() == (logs / "default/metrics.json").read_bytes()
    assert (root / "models/pretrained").is_dir()
    # Trained in this process instead of two workers: the same bytes.
    models = {p: p.read_bytes() for p in sorted((root / "models").rglob("*")) if p.is_file()}
    tiny_params["train"]["workers"] = 1
    write_params(root, tiny_params)
    run(root, sys.executable, "stages/train.py")
    assert {p: p.read_bytes() for p in sorted((root / "models").rglob("*")) if p.is_file()} == models
    # Evaluated: the twin is scored once and reports the same numbers.
    proc = run(root, sys.executable, "stages/evaluate.py")
    assert "default: same config and weights as tuned, reusing its scores" in proc.stderr
    metrics = json.loads((root / "reports/evaluation.json").read_text())
    assert metrics["default"] == metrics["tuned"] != metrics["pretrained"]
    for kind in ("adaptation", "ood", "kshot"):
        curves = [learner_curve("sinusoid", kind, name, root / "reports/plots") for name in ("default", "tuned")]
        pd.testing.assert_frame_equal(*curves)


RUNGS = {"fidelity": "hyperband", "iterations": 90, "min_iterations": 10, "eta": 3}


def test_a_hyperband_search_gives_the_same_log_on_dask_and_in_process(tiny_params, data_dir, tmp_path):
    """Real trials in rungs of 10, 30 and 90 iterations: the log depends on the params, not on where trials run."""
    tiny_params["search"].update(n_calls=9, n_initial_points=3, workers=1, **RUNGS)
    _real_search(tiny_params, data_dir, tmp_path / "inline")
    tiny_params["search"].update(executor="dask", address=None, workers=2)
    _real_search(tiny_params, data_dir, tmp_path / "dask")
    assert (tmp_path / "inline/trials.csv").read_bytes() == (tmp_path / "dask/trials.csv").read_bytes()
    trials = pd.read_csv(tmp_path / "inline/trials.csv")
    # One bracket: 9 trials train 10 iterations, the best 3 continue to 30, the best of those to 90.
    assert trials["iterations"].value_counts().to_dict() == {10: 6, 30: 2, 90: 1}
    assert trials["status"].value_counts().to_dict() == {"stopped": 8, "ok": 1}


def _rungs_logged(log) -> int:
    """Rungs finished in the trial log so far (0 before it exists; it is replaced atomically)."""
    return int(pd.read_csv(log)["rungs"].map(json.loads).map(len).sum()) if log.exists() else 0


def test_a_killed_hyperband_search_resumes_mid_rung(tiny_params, tmp_path):
    tiny_params["search"].update(n_calls=9, n_initial_points=3, workers=1, **{**RUNGS, "iterations": 900,
                                                                               "min_iterations": 100})  # fmt: skip
    reference = _search_project(tmp_path / "reference", tiny_params)
    run(reference, sys.executable, "stages/search.py")
    root = _search_project(tmp_path / "killed", tiny_params)
    log, checkpoints = root / "reports/search/trials.csv", root / "cache/search"
    kill_search_when(
        root, lambda: checkpoints.exists() and len(list(checkpoints.iterdir())) >= 4 and _rungs_logged(log) >= 4
    )
    rungs_before = pd.read_csv(log)["rungs"].map(json.loads)
    assert rungs_before.map(len).sum() >= 4
    resumed = run(root, sys.executable, "stages/search.py")
    assert "can be reused" in resumed.stderr
    for name in ("trials.csv", "best.json"):
        assert (root / "reports/search" / name).read_bytes() == (reference / "reports/search" / name).read_bytes()
    assert not checkpoints.exists()  # the finished search removes its checkpoints
