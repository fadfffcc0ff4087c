"""ANIL with a proximal head through the real pipeline: `dvc repro` in a temporary git repository on tiny settings.

In a file of its own so that ``pytest --dist loadfile`` runs it beside the main end-to-end project, not after it.
"""

from __future__ import annotations

import json

import pytest
import torch

from metahpo.learners.artifacts import load_learner

from conftest import load_default_params, shrink
from project import commit_all, copy_project, dvc, ran_stages, write_params

pytestmark = pytest.mark.e2e

STAGES = ["generate", "search", "train", "evaluate", "report"]


def test_the_proximal_head_runs_through_the_pipeline_and_images_refuse_it(tmp_path):
    params = shrink(load_default_params())
    params["meta"].update(algorithm="anil_proximal", inner_steps=2, inner_lr=0.5)
    params["search"]["space"]["algorithm"] = {"type": "categorical", "values": ["anil_proximal"]}
    root = copy_project(tmp_path / "proximal", params)
    commit_all(root, "proximal head")
    assert ran_stages(dvc(root, "repro")) == STAGES
    evaluation = json.loads((root / "reports/evaluation.json").read_text())
    for learner in ("tuned", "default"):
        assert json.loads((root / f"models/{learner}/config.json").read_text())["learner"]["algorithm"] == (
            "anil_proximal"
        )
        grid = evaluation[learner]["test"]["grid"]["k10"]
        assert all(grid[f"step{s}"]["mse"] is not None for s in range(4))
        assert grid["step1"]["mse"] < grid["step0"]["mse"]  # one solve fits better than the start
    learner = load_learner(root / "models/tuned", torch.device("cpu"))
    assert set(learner.inner_lrs) == {"log_rate"}  # the learned rate is saved and reloaded
    # On images the params check refuses it before any work, naming the key.
    params["tasks"]["family"] = "digits"
    write_params(root, params)
    refused = dvc(root, "repro", check=False)
    assert refused.returncode != 0
    assert "meta.algorithm: anil_proximal does not run on classification tasks" in refused.stdout + refused.stderr
