"""The live confirmation (benchmarks/search_live.py): its scoring, a tiny real run of both methods, bad input."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import search_live  # noqa: E402

from metahpo.recipes import parse_override  # noqa: E402

# max_cost 9: under the default's 6, the asha compute of 9 trials ran out here before any trial reached the last
# rung (the stage refuses that, naming search.n_calls)
TINY = ["search.iterations=90", "search.min_iterations=10", "search.n_calls=9", "search.n_initial_points=5",
        "search.workers=1", "search.max_cost=9", "tasks.splits.meta_train=300", "tasks.splits.meta_val=40"]  # fmt: skip


def run_of(events, budget=100.0, full=90):
    return {"events": [dict(zip(("budget", "value", "compute"), e)) for e in events], "budget": budget, "full": full}


def test_only_full_length_values_within_the_budget_count():
    run = run_of([(10, 0.1, 10.0), (90, 0.5, 40.0), (90, math.nan, 60.0), (90, 0.3, 90.0), (90, 0.2, 120.0)])
    assert search_live.best_within(run, 30.0) == math.inf  # a low rung's value is never a result
    assert search_live.best_within(run, 50.0) == 0.5
    assert search_live.best_within(run, 100.0) == 0.3  # the job that ended past the budget is left out
    assert search_live.compute_to_reach(run, 0.4) == 90.0
    assert search_live.compute_to_reach(run, 0.25) == math.inf


@pytest.mark.e2e
@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="needs the bench extra (optuna)")
def test_both_methods_run_on_real_trainings_and_a_rerun_reuses_them(tmp_path, capsys):
    out = tmp_path / "live"
    search_live.main(["--seeds", "1", "--jobs", "1", "--out", str(out), "--set", *TINY])
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    mine, theirs = runs["metahpo default"]["0"], runs["optuna tpe + hyperband"]["0"]
    assert mine["budget"] == theirs["budget"] > 0
    for run in (mine, theirs):
        computes = [e["compute"] for e in run["events"]]
        assert len(computes) >= 3 and computes == sorted(computes)
        assert {e["budget"] for e in run["events"]} == {10, 30, 90}  # every rung reached, none other
        assert all(set(e["point"]) >= {"algorithm", "inner_lr", "hidden"} for e in run["events"])
    assert theirs["events"][-1]["compute"] >= theirs["budget"]  # Optuna spent at least metahpo's compute
    again = search_live.run_optuna(0, dict(map(parse_override, TINY)))
    assert json.loads(json.dumps(again["events"])) == theirs["events"]  # reproducible: its study is named
    text = out.with_suffix(".txt").read_text()
    assert "median final best" in text and "Wilcoxon" in text and "full-length results within the budget" in text
    search_live.main(["--seeds", "1", "--out", str(out), "--set", *TINY])  # nothing left to run: re-scored only
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == runs
    assert out.with_suffix(".txt").read_text() == text
    with pytest.raises(SystemExit, match="retrainings of --retrain 1 are not in"):
        search_live.main(["--seeds", "1", "--out", str(out), "--report-only", "--retrain", "1", "--set", *TINY])
    search_live.main(["--seeds", "1", "--jobs", "1", "--out", str(out), "--retrain", "1", "--set", *TINY])
    saved = json.loads(out.with_suffix(".json").read_text())
    chosen = {json.dumps(search_live.chosen_point(run), sort_keys=True) for run in (mine, theirs)}
    assert saved["runs"] == runs and set(saved["retrained"]) == chosen
    assert all(len(v) == 1 and v[0] is not None and v[0] > 0 for v in saved["retrained"].values())
    point = search_live.chosen_point(mine)
    again = search_live.retrain((point, 0, dict(map(parse_override, TINY))))
    assert again == (json.dumps(point, sort_keys=True), 0, saved["retrained"][again[0]][0])  # deterministic
    assert "retrained with 1 fresh training seeds" in out.with_suffix(".txt").read_text()


def test_the_report_pairs_seeds_and_counts_a_run_without_a_full_length_result_as_worst():
    def run(value, compute=50.0):
        return {"events": [{"budget": 90, "value": value, "compute": compute, "trial": 0}], "budget": 100.0,
                "full": 90, "seconds": 1.0}  # fmt: skip

    runs = {"metahpo default": {"0": run(0.2), "1": run(0.3), "2": run(0.5, 150.0)},
            "optuna tpe + hyperband": {"0": run(0.25), "1": run(0.1), "2": run(0.4, 150.0)}}  # fmt: skip
    text = search_live.report(runs, [0, 1, 2])
    assert "lower on 1 of 3 seeds, level on 1, higher on 1" in text  # seed 2: neither within budget, a tie
    assert "median final best: metahpo default 0.3000, optuna tpe + hyperband 0.2500" in text


def test_the_retrained_comparison_scores_each_run_by_its_chosen_setting():
    def run(events):
        return {"events": [{"budget": b, "value": v, "compute": c, "trial": 0, "point": {"x": x}}
                           for b, v, c, x in events], "budget": 100.0, "full": 90, "seconds": 1.0}  # fmt: skip

    a = run([(90, 0.3, 20.0, 1), (90, 0.2, 60.0, 2), (90, 0.1, 150.0, 3)])  # the last ended past the budget
    b = run([(30, 0.05, 10.0, 4), (90, 0.25, 50.0, 5)])  # a low rung's value chooses nothing
    assert search_live.chosen_point(a) == {"x": 2} and search_live.chosen_point(b) == {"x": 5}
    assert search_live.chosen_point(run([(30, 0.1, 10.0, 1)])) is None
    retrained = {'{"x": 2}': [0.4, 0.6, 9.0], '{"x": 5}': [0.3, None]}
    assert search_live.retrained_mean(a, retrained, 2) == pytest.approx(0.5)  # the first n trainings only
    assert search_live.retrained_mean(b, retrained, 2) == math.inf  # a failed retraining counts as worst
    runs = {"metahpo default": {"0": a}, "optuna tpe + hyperband": {"0": b}}
    text = search_live.report(runs, [0], retrained, 2)
    assert "median retrained: metahpo default 0.5000, optuna tpe + hyperband inf" in text
    assert "metahpo default lower on 1 of 1 seeds" in text.split("retrained with")[1]
    with pytest.raises(SystemExit, match="do not record their points"):
        search_live.chosen_point({"events": [{"budget": 90, "value": 0.1, "compute": 1.0}], "budget": 9.0, "full": 90})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "search.iteration=90"], "search.iteration: no such key"),
        (["--set", "search.eta=1"], "search.eta"),
        (["--set", "search.fidelity=hyperband"], "needs search.fidelity: asha"),
        (["--retrain", "-1"], "--retrain at least 0"),
        (["--first-seed", "995", "--seeds", "10"], "the searches' seeds must lie in 0 .. 999"),
    ],
)
def test_bad_arguments_are_refused_before_any_run(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit):
        search_live.main(["--out", str(tmp_path / "x"), *args])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_runs_with_other_overrides_are_not_resumed(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"runs": {}, "overrides": {"search.iterations": 90}}))
    with pytest.raises(SystemExit):
        search_live.main(["--out", str(tmp_path / "x")])  # no overrides: not the stored ones
    assert "holds runs with other overrides" in capsys.readouterr().err
