"""The real search stage killed mid-search (kill -9) and resumed: no finished trial or rung runs again."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from project import kill_search_when, run, search_project

pytestmark = pytest.mark.e2e


def test_killed_search_resumes_without_rerunning_finished_trials(tiny_params, tmp_path):
    tiny_params["search"].update(n_calls=8, n_initial_points=3, workers=1, iterations=300)
    reference = search_project(tmp_path / "reference", tiny_params)
    run(reference, sys.executable, "stages/search.py")

    root = search_project(tmp_path / "killed", tiny_params)
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


def _rungs_logged(log) -> int:
    """Rungs finished in the trial log so far (0 before it exists; it is replaced atomically)."""
    return int(pd.read_csv(log)["rungs"].map(json.loads).map(len).sum()) if log.exists() else 0


def test_a_killed_hyperband_search_resumes_mid_rung(tiny_params, tmp_path):
    tiny_params["search"].update(n_calls=9, n_initial_points=3, workers=1, fidelity="hyperband", iterations=900,
                                 min_iterations=100, eta=3)  # fmt: skip
    reference = search_project(tmp_path / "reference", tiny_params)
    run(reference, sys.executable, "stages/search.py")
    root = search_project(tmp_path / "killed", tiny_params)
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
