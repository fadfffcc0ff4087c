"""The tabular benchmark: its builder's design and files, and the simulator on a small synthetic table."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from metahpo.params import Params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "tabular"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import build_table  # noqa: E402
import table as table_module  # noqa: E402


def synthetic_table(directory: Path, settings: int = 24, seeds: int = 3, torn: bool = False) -> Path:
    """A table of made-up curves over the real design (900 iterations, rungs of 100, 300, 900)."""
    raw = build_table.table_params("sinusoid", 900, 100)
    raw["search"]["min_iterations"] = 100
    points, _, _ = build_table.sobol_design(raw["search"]["space"], settings)
    design = {"family": "sinusoid", "params": raw, "every": 100, "seeds": [11, 12, 13][:seeds], "sobol": {},
              "points": points}  # fmt: skip
    (directory / "sinusoid.design.json").write_text(json.dumps(design))
    rng = np.random.default_rng(0)
    lines = []
    for s, p in enumerate(points):
        quality = abs(math.log10(p["inner_lr"] / 0.02)) + (p["algorithm"] != "metasgd") * 0.3
        for k in range(seeds):
            steps = np.arange(1, 10)
            curve = (0.1 + quality) * (1 + 3 / steps) + 0.02 * rng.standard_normal(9)
            status = "ok"
            if p["inner_lr"] > 0.3 and k == 0:  # a training that diverges after 400 iterations
                curve, status = curve[:4], "failed"
            lines.append(json.dumps({"setting": s, "seed_index": k, "seed": 11 + k, "status": status,
                                     "curve": curve.tolist(), "meta_val": float(curve[-1]), "meta_test": 1.0 + s,
                                     "error": "", "seconds": 0.1}))  # fmt: skip
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"setting": 99, "seed'
    (directory / "sinusoid.jsonl").write_text(text)
    return directory / "sinusoid"


def test_sobol_design_is_distinct_pinned_and_a_prefix_of_a_larger_one():
    space = build_table.table_params("sinusoid", None, 100)["search"]["space"]
    small, _, _ = build_table.sobol_design(space, 16)
    large, _, _ = build_table.sobol_design(space, 64)
    assert large[:16] == small
    assert len({json.dumps(p, sort_keys=True) for p in large}) == 64
    assert {p["algorithm"] for p in large} == set(build_table.MAML_FAMILY)
    for p in large:
        assert 0.001 <= p["inner_lr"] <= 0.5 and 20 <= p["hidden"] <= 100 and p["inner_steps"] in (1, 2, 3)


def test_sobol_design_leaves_out_settings_above_the_cost_cap():
    from metahpo.learners.cost import setting_macs
    from metahpo.learners.settings import apply_point, default_setting
    from metahpo.params import Params

    raw = build_table.table_params("sinusoid", None, 100)
    raw["search"]["max_cost"] = 4
    params = Params.from_dict(raw)
    allowed = build_table.within_cost(params)
    points, drawn, refused = build_table.sobol_design(raw["search"]["space"], 32, allowed=allowed)
    all_points, _, none_refused = build_table.sobol_design(raw["search"]["space"], 32 + refused)
    assert refused > 0 and none_refused == 0 and drawn >= 32 + refused
    baseline = setting_macs(default_setting(params), params)
    costs = [setting_macs(apply_point(params, p), params) / baseline for p in all_points]
    # The capped design is the uncapped one with the costly points taken out, in the same order.
    assert points == [p for p, c in zip(all_points, costs) if c <= 4]


def test_build_table_refuses_a_bad_shard(tmp_path, capsys):
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(SystemExit):
            build_table.main(["--shard", bad, "--out", str(tmp_path)])
        assert "--shard" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_table_params_refuse_an_every_that_does_not_divide_the_trial():
    with pytest.raises(SystemExit, match="--every"):
        build_table.table_params("sinusoid", 8100, 77)


def test_a_table_of_another_family_takes_its_recipe(capsys):
    raw = build_table.table_params("digits", None, 100)
    assert raw["tasks"]["family"] == "digits" and raw["tasks"]["shots"] == 1 and raw["model"]["arch"] == "conv"
    assert raw["search"]["iterations"] == 900 and raw["search"]["median_stop"]["checkpoints"] == 9
    assert raw["search"]["class_folds"] == 1 and raw["search"]["start_from_default"] is False
    assert raw["search"]["space"]["algorithm"]["values"] == list(build_table.MAML_FAMILY)
    Params.from_dict(raw)
    with pytest.raises(SystemExit):
        build_table.main(["--family", "omniglot"])
    assert "--family: invalid choice: 'omniglot'" in capsys.readouterr().err


def test_load_rows_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "t.jsonl"
    build_table.append_row(path, {"setting": 0, "seed_index": 0})
    with open(path, "a") as fh:
        fh.write('{"setting": 0, "se')
    assert build_table.load_rows(path) == [{"setting": 0, "seed_index": 0}]
    assert path.read_text() == '{"seed_index": 0, "setting": 0}\n'


def test_load_table_keeps_the_complete_prefix_and_marks_failures(tmp_path):
    prefix = synthetic_table(tmp_path, torn=True)
    lines = (tmp_path / "sinusoid.jsonl").read_text().splitlines()
    # Setting 5 loses a seed: the table stops before it, however many later settings are complete.
    kept = [line for line in lines if not line.startswith('{"setting": 5, "seed_index": 1')]
    (tmp_path / "sinusoid.jsonl").write_text("\n".join(kept) + "\n")
    table = table_module.load_table(prefix)
    assert len(table.points) == 5 and table.values.shape == (5, 3, 9)
    failed = [(s, k) for s in range(5) for k in range(3) if table.value(s, k, 900) is None]
    for s, k in failed:
        assert table.value(s, k, 400) is not None and table.value(s, k, 500) is None
    assert table.nearest(table.points[3]) == 3


PEERS = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None or importlib.util.find_spec("smac") is None,
    reason="the search peers are the bench extra: pip install -c constraints.txt -e '.[bench]'",
)


def test_load_table_names_a_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="sinusoid.design.json: no such table file"):
        table_module.load_table(tmp_path / "sinusoid")


def test_a_design_written_before_or_with_another_value_of_a_key_no_trial_reads_still_matches(tmp_path):
    build_table.main(["--out", str(tmp_path), "--max-settings", "0"])  # writes the design, trains nothing
    design_path = tmp_path / "sinusoid.design.json"
    stored = json.loads(design_path.read_text())
    del stored["params"]["train"]["compute"]  # a key added to params.yaml after the design was written
    stored["params"]["evaluate"]["workers"] = 7  # another value of a key no trial reads
    design_path.write_text(json.dumps(stored))
    build_table.main(["--out", str(tmp_path), "--max-settings", "0"])  # still the same design
    design = table_module.read_design(design_path)
    current = build_table.table_params("sinusoid", None, 100)
    assert design["params"]["evaluate"]["workers"] == current["evaluate"]["workers"] != 7
    assert Params.from_dict(design["params"]).train.compute == current["train"]["compute"]
    stored["params"]["search"]["iterations"] = 2700  # a key trials read is never filled in or ignored
    design_path.write_text(json.dumps(stored))
    assert table_module.read_design(design_path)["params"]["search"]["iterations"] == 2700
    with pytest.raises(SystemExit, match="a different design"):
        build_table.main(["--out", str(tmp_path), "--max-settings", "0"])


def test_a_design_of_another_family_is_read_with_its_recipe(tmp_path):
    build_table.main(["--family", "digits", "--out", str(tmp_path), "--max-settings", "0"])
    build_table.main(["--family", "digits", "--out", str(tmp_path), "--max-settings", "0"])  # the same design
    stored = json.loads((tmp_path / "digits.design.json").read_text())
    stored["params"]["train"]["compute"] = 5.0  # a value no trial reads, written by another params.yaml
    (tmp_path / "digits.design.json").write_text(json.dumps(stored))
    design = table_module.read_design(tmp_path / "digits.design.json")
    assert design["params"]["train"]["compute"] is None  # the digits recipe's, not params.yaml's 2.0 nor 5.0
    assert design["params"]["model"]["arch"] == "conv" and design["params"]["tasks"]["family"] == "digits"


def test_the_committed_sinusoid_table_still_describes_todays_params(capsys):
    tabular = ROOT / "benchmarks" / "tabular"
    before = (tabular / "sinusoid.jsonl").stat().st_size
    build_table.main(["--out", str(tabular), "--max-settings", "0"])  # refuses a design that no longer matches
    assert "0 to train" in capsys.readouterr().err
    assert (tabular / "sinusoid.jsonl").stat().st_size == before


def test_the_committed_comparison_names_only_methods_the_simulator_knows():
    import search_peers

    saved = json.loads((ROOT / "benchmarks" / "search_peers.json").read_text())
    assert set(saved["runs"]) <= set(search_peers.METHODS)


@PEERS
@pytest.mark.e2e  # a few minutes on a loaded machine
def test_simulator_runs_every_in_process_method_and_reports(tmp_path):
    import search_peers

    prefix = synthetic_table(tmp_path)
    out = tmp_path / "peers"
    methods = ["metahpo gp + hyperband", "random + hyperband", "optuna tpe + hyperband", "optuna tpe", "smac3 mf"]
    args = ["--table", str(prefix), "--seeds", "2", "--budget", "6", "--out", str(out)]
    search_peers.main([*args, "--methods", *methods])
    result = json.loads(Path(f"{out}.json").read_text())
    assert result["settings"] == 24 and set(result["methods"]) == set(methods)
    for method in methods:
        m = result["methods"][method]
        assert m["seeds"] == 2 and len(m["median_regret"]) == len(result["grid"])
        assert min(m["final_regret"]) >= 0
        for run in result["runs"][method].values():  # a run stops asking once its budget is spent
            spent = sum(e["stop"] - e["start"] for e in run)
            assert spent >= 6 * 900
            if "hyperband" not in method or method.startswith("optuna"):  # metahpo's Search plans whole brackets
                assert spent < 6 * 900 + 900
    rungs = set(result["methods"]["optuna tpe + hyperband"]["rung_share"])
    assert rungs <= {"100", "300", "900"} and set(result["methods"]["optuna tpe"]["rung_share"]) == {"900"}
    assert "paired per-seed" in Path(f"{out}.txt").read_text().lower()
    assert Path(f"{out}.png").stat().st_size > 0
    # Re-scoring the saved runs gives the same report.
    first = Path(f"{out}.txt").read_text()
    search_peers.main(["--table", str(prefix), "--seeds", "2", "--budget", "6", "--out", str(out), "--report-only"])
    assert Path(f"{out}.txt").read_text() == first


@PEERS
@pytest.mark.e2e
def test_simulator_is_deterministic(tmp_path):
    import search_peers

    prefix = synthetic_table(tmp_path)
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["--table", str(prefix), "--seeds", "2", "--budget", "4", "--out", str(out)]
        search_peers.main([*args, "--methods", "metahpo gp + hyperband", "optuna tpe + hyperband"])
        runs.append(json.loads(Path(f"{out}.json").read_text())["runs"])
    assert runs[0] == runs[1]


def test_simulator_refuses_bad_input(tmp_path):
    import search_peers

    prefix = synthetic_table(tmp_path)
    with pytest.raises(SystemExit):
        search_peers.main(["--table", str(prefix), "--seeds", "0"])
    with pytest.raises(SystemExit, match="--dehb-python"):
        search_peers.main(["--table", str(prefix), "--seeds", "1", "--budget", "2", "--methods", "dehb",
                           "--dehb-python", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])  # fmt: skip


@PEERS
def test_merge_refuses_another_budget_and_adds_runs(tmp_path):
    import search_peers

    prefix = synthetic_table(tmp_path)
    common = ["--table", str(prefix), "--seeds", "2"]
    search_peers.main([*common, "--budget", "3", "--out", str(tmp_path / "a"), "--methods", "optuna tpe"])
    with pytest.raises(SystemExit, match="budget"):
        search_peers.main([*common, "--budget", "4", "--out", str(tmp_path / "b"), "--methods", "optuna gp",
                           "--merge", str(tmp_path / "a.json")])  # fmt: skip
    search_peers.main([*common, "--budget", "3", "--out", str(tmp_path / "b"), "--methods", "optuna gp",
                       "--merge", str(tmp_path / "a.json")])  # fmt: skip
    merged = json.loads((tmp_path / "b.json").read_text())
    assert set(merged["methods"]) == {"optuna tpe", "optuna gp"}
    assert merged["runs"]["optuna tpe"] == json.loads((tmp_path / "a.json").read_text())["runs"]["optuna tpe"]


def test_default_method_names_a_tree_without_minimize(tmp_path):
    import search_peers

    try:
        from metahpo.search import minimize  # noqa: F401
    except ImportError:
        prefix = synthetic_table(tmp_path)
        with pytest.raises(SystemExit, match="minimize"):
            search_peers.one_run((prefix, None, "metahpo default", 0, 900, 20_000, 4.0))
    else:  # a tree with the new search: its runs spend the budget and continue trainings
        prefix = synthetic_table(tmp_path)
        _, _, events, _ = search_peers.one_run((prefix, None, "metahpo default", 0, 2700, 20_000, 4.0))
        assert sum(e["stop"] - e["start"] for e in events) >= 2700
        assert any(e["start"] > 0 for e in events)


def test_run_trial_scores_a_full_length_training_on_the_test_split_only():
    from metahpo.params import Params
    from metahpo.search.trial import TrialRequest, run_trial
    from metahpo.tasks.sinusoid import generate_splits

    raw = build_table.table_params("sinusoid", 20, 10)
    raw["tasks"]["splits"].update(meta_train=200, meta_val=20, meta_test=30, meta_ood=10)
    params = Params.from_dict(raw)
    data = generate_splits(params.tasks, 0)
    point = {"algorithm": "maml", "inner_lr": 0.01, "outer_lr": 0.001, "outer_schedule": "constant",
             "inner_steps": 1, "hidden": 20}  # fmt: skip
    folds = [(data["meta_train"], data["meta_val"])]
    full = run_trial(TrialRequest(0, point, 5, params, folds, test_split=data["meta_test"]))
    assert full.status == "ok" and len(full.curve) == 2 and full.curve[-1] == full.objective
    assert len(full.test_objectives) == 1 and full.test_objectives[0] != full.objective
    # The same training stopped at a rung is not scored on the test split, and without one nothing is.
    rung = run_trial(TrialRequest(0, point, 5, params, folds, stop_at=10, test_split=data["meta_test"]))
    assert rung.test_objectives == [] and rung.curve == full.curve[:1]
    assert run_trial(TrialRequest(0, point, 5, params, folds)).test_objectives == []


DEHB_PYTHON = Path("/work/venvs/dehb/bin/python")


@pytest.mark.skipif(not DEHB_PYTHON.exists(), reason="DEHB's own venv is not installed (benchmarks/README.md)")
def test_dehb_runs_in_its_venv_deterministically_within_the_budget(tmp_path):
    import search_peers

    table = table_module.load_table(synthetic_table(tmp_path))
    first = search_peers.run_dehb(table, [0, 1], 2700, 20_000, 4.0, str(DEHB_PYTHON))
    again = search_peers.run_dehb(table, [0, 1], 2700, 20_000, 4.0, str(DEHB_PYTHON))
    assert [r.events for r in first] == [r.events for r in again]
    for run in first:
        assert 2700 <= run.compute < 2700 + 900
        assert {e["stop"] for e in run.events} <= {100, 300, 900} and all(e["start"] == 0 for e in run.events)
