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

TINY = ["search.iterations=90", "search.min_iterations=10", "search.n_calls=9", "search.n_initial_points=5",
        "search.workers=1", "tasks.splits.meta_train=300", "tasks.splits.meta_val=40"]  # fmt: skip


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


def test_the_report_pairs_seeds_and_counts_a_run_without_a_full_length_result_as_worst():
    def run(value, compute=50.0):
        return {"events": [{"budget": 90, "value": value, "compute": compute, "trial": 0}], "budget": 100.0,
                "full": 90, "seconds": 1.0}  # fmt: skip

    runs = {"metahpo default": {"0": run(0.2), "1": run(0.3), "2": run(0.5, 150.0)},
            "optuna tpe + hyperband": {"0": run(0.25), "1": run(0.1), "2": run(0.4, 150.0)}}  # fmt: skip
    text = search_live.report(runs, [0, 1, 2])
    assert "lower on 1 of 3 seeds, level on 1, higher on 1" in text  # seed 2: neither within budget, a tie
    assert "median final best: metahpo default 0.3000, optuna tpe + hyperband 0.2500" in text


def test_a_bad_override_is_refused_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        search_live.main(["--out", str(tmp_path / "x"), "--set", "search.iteration=90"])
    assert "search.iteration: no such key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        search_live.main(["--out", str(tmp_path / "x"), "--set", "search.eta=1"])
    assert "search.eta" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        search_live.main(["--out", str(tmp_path / "x"), "--set", "search.fidelity=hyperband"])
    assert "needs search.fidelity: asha" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    (tmp_path / "x.json").write_text(json.dumps({"runs": {}, "overrides": {"search.iterations": 90}}))
    with pytest.raises(SystemExit):
        search_live.main(["--out", str(tmp_path / "x")])  # no overrides: not the stored ones
    assert "holds runs with other overrides" in capsys.readouterr().err
