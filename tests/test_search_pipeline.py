"""The real search stage: Dask against local processes, every method through DVC (resume: test_search_resume.py)."""

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
from project import commit_all, copy_project, dvc, run, search_project, write_params

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
    root = search_project(tmp_path / "p", tiny_params)
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
