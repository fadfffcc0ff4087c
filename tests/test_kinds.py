"""Kinds of meta-learner side by side: each kind's best search trial, trained beside the tuned learner."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from metahpo import paths
from metahpo.errors import ArtifactError
from metahpo.learners.settings import apply_point
from metahpo.reporting.kinds import kinds_section
from metahpo.reporting.regression import fmt
from metahpo.search.final_training import train_stage
from metahpo.search.kind_bests import kind_bests, searched_kinds
from metahpo.tasks.generate import generate_stage

from conftest import typed

CPU = torch.device("cpu")
COLUMNS = ("trial", "status", "objective", "iterations", "cost_macs", "rungs", "point")


def write_trials(path, rows: list[tuple]) -> None:
    """A trial log with the columns the kinds are chosen from: ``(status, objective, rungs, point)`` per trial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for trial, (status, objective, rungs, point) in enumerate(rows):
            iterations = max(map(int, rungs), default=30)
            writer.writerow([trial, status, objective, iterations, 1000, json.dumps(rungs), json.dumps(point)])


def test_searched_kinds_follow_the_algorithm_dimension():
    space = {"algorithm": {"type": "categorical", "values": ["cnp", "anil", "maml"]}}
    assert searched_kinds(space) == ["maml_family", "cnp"]
    assert searched_kinds({"hidden": {"type": "integer", "low": 1, "high": 2}}) == []


def test_each_kind_is_its_best_finished_trial_else_its_best_at_the_highest_rung(tmp_path):
    trials = tmp_path / "trials.csv"
    write_trials(trials, [
        ("ok", 0.30, {"9": [0.5], "27": [0.3]}, {"algorithm": "maml"}),
        ("stopped", 0.10, {"9": [0.1]}, {"algorithm": "metasgd"}),  # lower, but it did not finish
        ("ok", 0.20, {"9": [0.4], "27": [0.2]}, {"algorithm": "anil"}),
        ("ok", 0.20, {"9": [0.4], "27": [0.2]}, {"algorithm": "fomaml"}),  # a tie: the earlier trial stands
        ("stopped", 0.05, {"9": [0.05]}, {"algorithm": "cnp"}),
        ("stopped", 0.90, {"9": [0.2], "27": [0.9]}, {"algorithm": "cnp"}),  # reached further: it stands
        ("failed", 0.0, {}, {"algorithm": "learned_optimizer"}),
    ])  # fmt: skip
    bests = kind_bests(trials, ["maml_family", "cnp", "learned_optimizer"])
    assert (bests["maml_family"]["trial"], bests["maml_family"]["status"]) == (2, "ok")
    assert (bests["cnp"]["trial"], bests["cnp"]["status"], bests["cnp"]["iterations"]) == (5, "stopped", 27)
    assert bests["maml_family"]["trials_of_kind"] == 4
    assert bests["learned_optimizer"] == {"trials_of_kind": 1}


def test_a_damaged_or_missing_trial_log_is_refused_naming_it(tmp_path):
    with pytest.raises(ArtifactError, match=r"trials.csv: missing; run the search stage"):
        kind_bests(tmp_path / "trials.csv", ["cnp"])
    (tmp_path / "trials.csv").write_text("trial,status,point\n0,ok,{not json\n")
    with pytest.raises(ArtifactError, match=r"trials.csv: not a readable trial log"):
        kind_bests(tmp_path / "trials.csv", ["cnp"])


@pytest.mark.parametrize("compare", [True, False])
def test_train_trains_the_other_kinds_best_from_the_search_and_reads_nothing_held_out(
    tiny_params, tmp_path, monkeypatch, compare
):
    tiny_params["search"]["space"] = {"algorithm": {"type": "categorical", "values": ["maml", "cnp"]}}
    tiny_params["train"].update(iterations=10, log_every=5, workers=1, compare_kinds=compare)
    params = typed(tiny_params)
    monkeypatch.chdir(tmp_path)
    generate_stage(params, CPU)
    for held_out in ("meta_test", "meta_ood"):  # gone: reading them would fail
        (paths.TASKS / f"{held_out}.npz").unlink()
    points = [{"algorithm": "maml"}, {"algorithm": "cnp"}, {"algorithm": "maml"}]
    write_trials(paths.TRIALS, [("ok", value, {}, p) for value, p in zip((0.5, 0.3, 0.4), points)])
    best = {"trial": 1, "objective": 0.3, "point": points[1], "seed": 1, "setting": apply_point(params, points[1])}
    paths.BEST.write_text(json.dumps(best))
    train_stage(params, CPU)
    record = json.loads((paths.MODELS / paths.KINDS).read_text())
    assert record["compare_kinds"] is compare
    if not compare:
        assert record["kinds"] == {} and not (paths.MODELS / "best_maml_family").exists()
        return
    assert {kind: (e["learner"], e["trial"]) for kind, e in record["kinds"].items()} == {
        "maml_family": ("best_maml_family", 2),
        "cnp": ("tuned", 1),
    }
    config = json.loads((paths.MODELS / "best_maml_family" / "config.json").read_text())
    assert config["setting"] == apply_point(params, points[2]) == record["kinds"]["maml_family"]["setting"]
    assert config["iterations"] == 10 and (paths.TRAIN_LOGS / "best_maml_family").is_dir()


def _stat(value: float, ci: float) -> dict:
    return {"mse": value, "ci95": ci}


def _learner(values: list[float], ci: float) -> dict:
    return {"test": {"grid": {"k10": {f"step{s}": _stat(v, ci) for s, v in enumerate(values)}}}}


def _record(learner: str, trial: int, status: str = "ok") -> dict:
    return {"learner": learner, "trial": trial, "status": status, "iterations": 90}


def test_the_report_sets_the_kinds_side_by_side(tiny_params, tmp_path, monkeypatch):
    tiny_params["evaluate"]["max_steps"] = 2
    tiny_params["train"]["finetune"]["max_steps"] = 2
    params = typed(tiny_params)
    monkeypatch.chdir(tmp_path)
    for name, algorithm in (
        ("tuned", "cnp"),
        ("best_maml_family", "metasgd"),
        ("best_learned_optimizer", "learned_optimizer"),
    ):
        setting = apply_point(params, {"algorithm": algorithm})
        (paths.MODELS / name).mkdir(parents=True)
        (paths.MODELS / name / "config.json").write_text(json.dumps({"setting": setting}))
    metrics = {
        "tuned": _learner([0.14, 0.14, 0.14], 0.01),
        "best_maml_family": _learner([3.0, 0.20, 0.13], 0.02),
        "kinds": {
            "maml_family": _record("best_maml_family", 17, "stopped"),
            "cnp": _record("tuned", 14),
            "learned_optimizer": {"learner": None, "trials_of_kind": 0},
        },
    }
    text = kinds_section(params, metrics, fmt, "grid MSE", "grid", higher_is_better=False)
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines() if line.startswith("| ")}
    maml = rows["parameter-based: MAML family (MAML, first-order MAML, Meta-SGD, ANIL, ANIL with a proximal head)"]
    assert "`best_maml_family`: metasgd" in maml and "search trial 17 (stopped at 90 iterations" in maml
    assert "3.000 ± 0.020 | 0.200 ± 0.020 | 0.130 ± 0.020" in maml and "**published** at K = 10" in maml
    cnp = rows["model-based: conditional neural process (Garnelo et al. 2018)"]
    assert "`tuned`: cnp, no inner steps" in cnp and "0.140 ± 0.010 | 0.140 ± 0.010 | 0.140 ± 0.010" in cnp
    assert "searched, but no trial drew it" in rows["optimization-based: learned optimizer (Andrychowicz et al. 2016)"]
    assert "does not apply" in rows["metric-based: prototypical network (Snell et al. 2017)"]
    assert "After 1 step the CNP leads the MAML family: their 95% CIs do not overlap." in text
    assert "After 2 steps the MAML family leads the CNP: their 95% CIs overlap." in text
    assert "update rule was meta-trained" not in text
    metrics["best_learned_optimizer"] = _learner([3.0, 1.0, 9.0], 0.5)
    for name in ("best_learned_optimizer", "best_maml_family"):  # both diverge by the last step
        metrics[name]["test"]["grid"]["k10"]["step2"] = _stat(None, None)
    metrics["kinds"]["learned_optimizer"] = _record("best_learned_optimizer", 3)
    both = kinds_section(params, metrics, fmt, "grid MSE", "grid", higher_is_better=False)
    assert (
        "The `best_learned_optimizer` learner's update rule was meta-trained for 1 inner steps; later" in both
        and "`best_learned_optimizer`" in both
    )
    assert "After 2 steps only the CNP has a score: the MAML family and the learned optimizer diverged." in both
    del metrics["kinds"]["learned_optimizer"]
    del metrics["kinds"]["maml_family"]
    assert "Only one kind was trained" in kinds_section(params, metrics, fmt, "grid MSE", "grid", False)
    metrics["kinds"] = None
    assert "`train.compare_kinds` is false" in kinds_section(params, metrics, fmt, "grid MSE", "grid", False)
