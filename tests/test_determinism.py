"""Two full pipeline runs from fresh clones with the same tiny params give byte-identical results."""

from __future__ import annotations

import pytest

from project import commit_all, copy_project, dvc, git

pytestmark = pytest.mark.e2e

IDENTICAL = [
    "reports/metrics.json",
    "reports/metrics_ci95.json",
    "reports/evaluation.json",
    "reports/search/trials.csv",
    "reports/search/best.json",
    "reports/plots/sinusoid/by_step/meta_test_grid_mse.csv",
    "reports/plots/sinusoid/by_shots/meta_test_query_mse.csv",
    "models/tuned/model.pt",
    "models/default/model.pt",
    "models/pretrained/model.pt",
    "models/tuned/config.json",
    "data/tasks/meta_train.npz",
    "data/tasks/meta_test.npz",
]


def test_fresh_clones_give_byte_identical_outputs(tmp_path):
    from conftest import load_default_params, shrink

    origin = copy_project(tmp_path / "origin", shrink(load_default_params()))
    commit_all(origin, "tiny project")
    clones = []
    for name in ("a", "b"):
        git(tmp_path, "clone", "-q", str(origin), name)
        dvc(tmp_path / name, "repro")
        clones.append(tmp_path / name)
    a, b = clones
    for rel in IDENTICAL:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
