"""Few-shot classification through the real pipeline: an image folder in both layouts, `dvc repro` in a git repo."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from image_folders import class_image, image_folder_params, make_flat, make_omniglot

from metahpo.evaluation.panels import learner_curve

from project import commit_all, copy_project, dvc, ran_stages

pytestmark = pytest.mark.e2e

STAGES = ["generate", "search", "train", "evaluate", "report"]
LEARNERS = ("tuned", "default", "protonet", "pretrained")


def run_image_folder_project(tmp_path, layout: str):
    from conftest import load_default_params, shrink

    params = image_folder_params(shrink(load_default_params()), "data/raw/letters")
    if layout == "omniglot":  # one layout also scores the search on a second class fold
        params["search"]["class_folds"] = 2
    root = copy_project(tmp_path / layout, params)
    (make_flat if layout == "flat" else make_omniglot)(root / "data/raw/letters")
    dvc(root, "config", "core.analytics", "false")
    dvc(root, "add", "data/raw/letters")
    commit_all(root, f"{layout} image folder")
    assert ran_stages(dvc(root, "repro")) == STAGES
    return root


@pytest.mark.parametrize("layout", ["flat", "omniglot"])
def test_image_folder_runs_end_to_end(tmp_path, layout):
    root = run_image_folder_project(tmp_path, layout)
    metrics = json.loads((root / "reports/evaluation.json").read_text())
    assert metrics["protocol"] == {"episodes": 8, "ways": 2, "shots": 1, "query": 2}
    for learner in LEARNERS:
        at_one = metrics[learner]["test"]["query"]["k1"]["step1"]
        # 8 episodes of 2 classes x 2 queries: the mean accuracy is a whole number of 32nds.
        assert at_one["accuracy"] * 32 == pytest.approx(round(at_one["accuracy"] * 32), abs=1e-9)
        curve = learner_curve("image_folder", "accuracy", learner, root / "reports/plots")
        assert curve.loc[1, "accuracy"] == pytest.approx(at_one["accuracy"], rel=1e-5)
        assert curve.loc[1, "ci95"] == pytest.approx(at_one["ci95"], rel=1e-5, abs=1e-9)
        assert (root / f"models/{learner}/model.pt").is_file()
    pretrained = json.loads((root / "models/pretrained/config.json").read_text())
    finetuning = pretrained["finetuning"]  # a fresh 2-way head, then the head or the whole network, on meta_val
    assert finetuning["chosen_on"] == "meta_val" and set(finetuning["grid"]["val_score"]) == {"anil", "maml"}
    assert pretrained["learner"]["algorithm"] == finetuning["algorithm"] and pretrained["learner"]["outputs"] == 2
    floor = metrics["floor"]["test"]["query"]["k1"]  # the raw-pixel nearest class mean: no learner, no steps
    assert floor["accuracy"] * 32 == pytest.approx(round(floor["accuracy"] * 32), abs=1e-9)
    paired = metrics["paired"]  # tuned minus each row, episode by episode
    assert set(paired) == {"default", "protonet", "pretrained", "floor"}
    tuned = metrics["tuned"]["test"]["query"]["k1"][f"step{metrics['tuned']['inner_steps']}"]["accuracy"]
    assert paired["floor"]["mean"] == pytest.approx(tuned - floor["accuracy"], abs=1e-12)
    assert all(0 <= p["larger"] + p["smaller"] <= 8 for p in paired.values())
    floor_curve = learner_curve("image_folder", "accuracy", "floor", root / "reports/plots")
    assert list(floor_curve["accuracy"]) == pytest.approx([floor["accuracy"]] * len(floor_curve), rel=1e-5)
    manifest = json.loads((root / "data/tasks/manifest.json").read_text())
    classes = [set(manifest["splits"][s]["classes"]) for s in ("meta_train", "meta_val", "meta_test")]
    assert [len(c) for c in classes] == [8, 4, 4] and not (classes[0] & classes[2] or classes[1] & classes[2])
    report = (root / "reports/report.md").read_text()
    assert "2-way 1-shot classification on `data/raw/letters`" in report
    # headline, paired, K-shot
    assert len([line for line in report.splitlines() if line.startswith("| task floor")]) == 3
    assert "| tuned minus | mean ± 95% CI | own CIs overlap |" in report
    metric_based = next(line for line in report.splitlines() if line.startswith("| metric-based"))
    at_one = metrics["protonet"]["test"]["query"]["k1"]["step1"]
    assert (
        f"{100 * at_one['accuracy']:.1f} ± {100 * at_one['ci95']:.1f} %" in metric_based and "baseline" in metric_based
    )
    for figure in ("accuracy", "episodes", "search", "training", "objective"):
        assert (root / f"reports/figures/{figure}.png").is_file() and f"figures/{figure}.png" in report
    trials = pd.read_csv(root / "reports/search/trials.csv")
    objectives = trials.loc[trials["status"] == "ok", "objectives"].map(json.loads)
    assert len(objectives) and set(objectives.map(len)) == {2 if layout == "omniglot" else 1}
    assert ("mean over 2 class folds" in report) == (layout == "omniglot")
    name = "error rate (1 - accuracy)"  # the tiny settings' search.objective: accuracy
    objective = f"{name} (mean over 2 class folds)" if layout == "omniglot" else f"meta_val {name}"
    assert f"objective: {objective} after 1 adaptation step(s)" in report
    assert re.search(rf"Best: trial \d+, {re.escape(objective)} \d", report)
    [workspace] = json.loads(dvc(root, "metrics", "show", "--json").stdout).values()
    headline = json.loads((root / "reports/metrics.json").read_text())
    assert workspace["data"]["reports/metrics.json"]["data"] == headline
    assert set(headline) == {*LEARNERS, "floor"} and set(headline["floor"]) == {"k1", "k2"}
    assert headline["tuned"]["k1"] == metrics["tuned"]["test"]["query"]["k1"]["step1"]["accuracy"]

    if layout == "flat":  # a changed image reruns the pipeline from generate; an unchanged folder reruns nothing
        assert ran_stages(dvc(root, "repro")) == []
        class_image(5, 99).save(root / "data/raw/letters/class3/0.png")
        assert ran_stages(dvc(root, "repro", "--dry"))[0] == "generate"  # what would run, without running it
