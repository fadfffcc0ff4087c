"""The search loop with real scikit-optimize and real executors, on cheap synthetic trials."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import synthetic_trials as st
from skopt.space import Categorical, Integer, Real

from metahpo.search.driver import Search
from metahpo.search.proposers import (
    GridProposer,
    build_space,
    dimension_grid,
    make_proposer,
    pin_inactive,
    to_python,
)
from metahpo.search.trial import median_reference
from metahpo.seeds import trial_seed

from conftest import typed


@pytest.fixture
def search_params(tiny_params):
    tiny_params["search"].update(n_calls=12, n_initial_points=5, workers=1)
    tiny_params["search"]["space"] = {
        "inner_lr": {"type": "real", "low": 0.001, "high": 1.0, "prior": "log-uniform"},
        "hidden": {"type": "integer", "low": 10, "high": 100, "prior": "uniform"},
        "algorithm": {"type": "categorical", "values": ["maml", "metasgd"]},
    }
    return tiny_params


def run(params, tmp_path, trial_fn=st.bowl, name="s", floor=10.0):
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    search = Search(typed(params), {"meta_train": {}, "meta_val": {}}, floor, tmp_path / name, manifest, trial_fn)
    return search.run(), pd.read_csv(tmp_path / name / "trials.csv")


def test_space_has_typed_named_dimensions(search_params):
    dims = build_space(search_params["search"]["space"])
    assert [type(d) for d in dims] == [Real, Integer, Categorical]
    assert [d.name for d in dims] == ["inner_lr", "hidden", "algorithm"]
    assert dims[0].prior == "log-uniform"


@pytest.mark.parametrize("method", ["gp", "forest", "random", "grid"])
def test_every_method_logs_every_trial_and_returns_the_best(search_params, tmp_path, method):
    search_params["search"]["method"] = method
    best, trials = run(search_params, tmp_path)
    assert list(trials["trial"]) == list(range(12))
    assert (trials["status"] == "ok").all()
    assert best["objective"] == trials["objective"].min()
    assert trials["best_so_far"].is_monotonic_decreasing
    np.testing.assert_allclose(trials["told"], np.log(trials["objective"]))
    assert isinstance(best["point"]["hidden"], int) and isinstance(best["point"]["algorithm"], str)
    assert best["seed"] == trial_seed(search_params["seed"], best["trial"])
    assert len({tuple(json.loads(p).values()) for p in trials["point"]}) == 12  # no repeated points


def test_gp_beats_random_search_at_equal_trials_over_seeds(search_params, tmp_path):
    # Bayesian optimisation beats random search on a low-dimensional continuous space (Snoek et al. 2012):
    # on the 2-D bowl, at 12 trials each, over 5 seeds, paired by seed.
    search_params["search"].update(n_calls=12, n_initial_points=5)
    search_params["search"]["space"] = {k: search_params["search"]["space"][k] for k in ("inner_lr", "hidden")}
    regret = {"gp": [], "random": []}
    for seed in range(5):
        for method in regret:
            search_params.update(seed=seed)
            search_params["search"]["method"] = method
            best, trials = run(search_params, tmp_path, name=f"{method}{seed}")
            regret[method].append(best["objective"] - st.bowl_value({"inner_lr": 0.03, "hidden": 50}))
    wins = sum(g < r for g, r in zip(regret["gp"], regret["random"]))
    assert wins >= 4, regret
    assert np.median(regret["gp"]) <= np.median(regret["random"]) / 2, regret


def test_same_params_give_the_same_log_bytes(search_params, tmp_path):
    run(search_params, tmp_path, name="a")
    run(search_params, tmp_path, name="b")
    assert (tmp_path / "a/trials.csv").read_bytes() == (tmp_path / "b/trials.csv").read_bytes()


def test_batches_of_two_on_a_process_pool_equal_batches_of_two_inline(search_params, tmp_path):
    search_params["search"]["workers"] = 2
    run(search_params, tmp_path, name="pool")
    inline = dict(search_params, search=dict(search_params["search"]))
    # Same batch size, run one at a time: the proposer sees the same asks and tells.
    from metahpo.executors import InlineExecutor, TrialRunner

    original = TrialRunner._start
    TrialRunner._start = lambda self: setattr(self, "executor", InlineExecutor())
    try:
        run(inline, tmp_path, name="inline")
    finally:
        TrialRunner._start = original
    assert (tmp_path / "pool/trials.csv").read_bytes() == (tmp_path / "inline/trials.csv").read_bytes()


def test_failed_trials_get_a_penalty_and_are_never_best(search_params, tmp_path):
    best, trials = run(search_params, tmp_path, trial_fn=st.diverges_above_005, floor=7.5)
    failed = trials[trials["status"] == "failed"]
    assert len(failed) > 0 and failed["objective"].isna().all()
    assert (failed["told"] >= math.log(7.5)).all() and failed["error"].str.contains("nan").all()
    assert best["point"]["inner_lr"] <= 0.05


def test_all_trials_failing_is_an_error(search_params, tmp_path):
    from metahpo.errors import DivergenceError

    with pytest.raises(DivergenceError, match="all 12 trials failed"):
        run(search_params, tmp_path, trial_fn=st.always_fails)


def test_more_calls_reuse_every_finished_trial(search_params, tmp_path, capsys):
    search_params["search"]["n_calls"] = 6
    run(search_params, tmp_path, name="s")
    seconds_before = pd.read_csv(tmp_path / "s/trial_seconds.csv")
    search_params["search"]["n_calls"] = 12
    _, extended = run(search_params, tmp_path, name="s")
    assert "6 finished trials" in capsys.readouterr().err
    _, fresh = run(search_params, tmp_path, name="fresh")
    pd.testing.assert_frame_equal(extended, fresh)
    assert (pd.read_csv(tmp_path / "s/trial_seconds.csv")[:6] == seconds_before).all().all()


def test_a_log_from_other_params_is_not_reused(search_params, tmp_path, capsys):
    run(search_params, tmp_path, name="s")
    search_params["search"]["iterations"] += 1
    run(search_params, tmp_path, name="s")
    assert "params, task data or code changed" in capsys.readouterr().err


def test_a_lost_worker_is_retried_then_recorded_as_failed(search_params, tmp_path, monkeypatch):
    search_params["search"].update(workers=2, n_calls=4, n_initial_points=4)
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    _, trials = run(search_params, tmp_path, trial_fn=st.dies_once_on_trial_1, name="retried")
    assert (trials["status"] == "ok").all()
    search_params["search"]["retries"] = 0
    _, trials = run(search_params, tmp_path, trial_fn=st.always_dies_on_trial_1, name="lost")
    assert trials.loc[1, "status"] == "failed" and "worker lost" in trials.loc[1, "error"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_trial_of_several_trainings_runs_one_job_per_training(search_params, tmp_path, workers):
    search_params["search"].update(repeats=3, workers=workers, n_calls=4, n_initial_points=4)
    _, trials = run(search_params, tmp_path, trial_fn=st.bowl_per_training, name=f"w{workers}")
    assert (trials["status"] == "ok").all()
    for _, row in trials.iterrows():
        bowl = st.bowl_value(json.loads(row["point"]))
        np.testing.assert_allclose(json.loads(row["objectives"]), [bowl, bowl + 0.001, bowl + 0.002])
        assert row["objective"] == pytest.approx(bowl + 0.001)
    assert (pd.read_csv(tmp_path / f"w{workers}/trial_seconds.csv")["seconds"] == 3.0).all()


def test_grid_covers_the_space_on_the_prior_scale(search_params):
    search_params["search"].update(method="grid", grid_points=3)
    grid = make_proposer(typed(search_params).search, 0)
    assert isinstance(grid, GridProposer) and len(grid) == 3 * 3 * 2
    lr = build_space(search_params["search"]["space"])[0]
    np.testing.assert_allclose(dimension_grid(lr, 3), [0.001, math.sqrt(0.001), 1.0])
    assert len({tuple(p) for p in grid.ask(18, 0)}) == 18


def conditional_space(search_params):
    search_params["search"]["space"] |= {
        "algorithm": {"type": "categorical", "values": ["maml", "cnp", "learned_optimizer"]},
        "representation": {"type": "integer", "low": 8, "high": 64, "prior": "uniform"},
        "rule_hidden": {"type": "integer", "low": 4, "high": 40, "prior": "uniform"},
    }
    return typed(search_params).search


LOWEST = {"inner_lr": 0.001, "representation": 8, "rule_hidden": 4}
READ_BY = {"inner_lr": ("maml", "learned_optimizer"), "representation": ("cnp",), "rule_hidden": ("learned_optimizer",)}


def assert_pinned(points: list[dict]) -> None:
    """Dimensions a point's algorithm does not read sit at their lowest value; the ones it reads vary."""
    for name, users in READ_BY.items():
        assert all(p[name] == LOWEST[name] for p in points if p["algorithm"] not in users), name
        free = [p[name] for p in points if p["algorithm"] in users]
        assert len(free) < 2 or len(set(free)) > 1, name


@pytest.mark.parametrize("method", ["gp", "forest", "random"])
def test_dimensions_an_algorithm_does_not_read_are_pinned(search_params, method):
    search_params["search"].update(method=method, n_initial_points=8)
    search = conditional_space(search_params)
    proposer, names = make_proposer(search, 0), list(search.space)
    points = proposer.ask(8, 0)
    proposer.tell(points, [float(i) for i in range(8)])
    points += proposer.ask(2, 8)
    assert {p[names.index("algorithm")] for p in points} == {"maml", "cnp", "learned_optimizer"}
    assert_pinned([dict(zip(names, p)) for p in points])


def test_a_conditional_grid_lists_each_distinct_point_once(search_params):
    search_params["search"].update(method="grid", grid_points=3)
    search = conditional_space(search_params)
    grid, names = make_proposer(search, 0), list(search.space)
    # inner_lr x hidden x (maml: 1 | cnp: 3 representations, inner_lr pinned | learned_optimizer: 3 rule sizes)
    assert len(grid) == 3 * 3 * 1 + 3 * 3 + 3 * 3 * 3
    points = grid.ask(len(grid), 0)
    assert len({tuple(p) for p in points}) == len(grid)
    assert_pinned([dict(zip(names, p)) for p in points])
    dims = build_space(search.space)
    assert pin_inactive(points[0], dims) == points[0]


def test_random_points_depend_only_on_the_trial(search_params):
    search_params["search"]["method"] = "random"
    a, b = make_proposer(typed(search_params).search, 0), make_proposer(typed(search_params).search, 0)
    assert a.ask(4, 0)[2:] == b.ask(2, 2)


def test_median_reference_needs_enough_trials():
    curves = [[3.0, 2.0], [5.0, 1.0], [4.0]]
    assert median_reference(curves, 3) == [4.0]
    assert median_reference(curves, 2) == [4.0, 1.5]
    assert median_reference(curves, 4) is None


def test_numpy_scalars_are_cast():
    assert type(to_python(np.int64(3))) is int and type(to_python(np.float64(0.5))) is float
    assert to_python("maml") == "maml"


@pytest.mark.parametrize("method", ["gp", "forest", "random", "grid"])
def test_start_from_default_runs_the_untuned_setting_first(search_params, tmp_path, method):
    search_params["search"].update(method=method, start_from_default=True)
    search_params["meta"].update(inner_lr=0.05, algorithm="metasgd")
    search_params["model"]["hidden"] = 40
    _, trials = run(search_params, tmp_path)
    assert json.loads(trials["point"][0]) == {"inner_lr": 0.05, "hidden": 40, "algorithm": "metasgd"}
    assert list(trials["trial"]) == list(range(12)) and (trials["status"] == "ok").all()
    search_params["search"]["start_from_default"] = False
    _, plain = run(search_params, tmp_path, name="plain")
    # The proposer's own trials follow, shifted by one (random and grid: the same points).
    if method in ("random", "grid"):
        assert list(trials["point"][1:]) == list(plain["point"][:11])


def test_start_from_default_counts_the_extra_trial_against_a_small_grid(search_params, tmp_path):
    search_params["search"].update(method="grid", grid_points=2, n_calls=100, start_from_default=True)
    search_params["search"]["space"] = {"inner_lr": {"type": "real", "low": 0.001, "high": 1.0, "prior": "uniform"}}
    _, trials = run(search_params, tmp_path, trial_fn=st.bowl_of_inner_lr)
    assert [json.loads(p)["inner_lr"] for p in trials["point"]][0] == search_params["meta"]["inner_lr"]
    assert len(trials) == 3 and sorted(json.loads(p)["inner_lr"] for p in trials["point"][1:]) == [0.001, 1.0]


def _seconds(tmp_path, name="s") -> pd.Series:
    return pd.read_csv(tmp_path / name / "trial_seconds.csv").set_index("trial")["seconds"]


def test_n_calls_ending_inside_a_batch_keeps_every_trial(search_params, tmp_path, capsys):
    """3 then 4 trials in batches of 2: trial 2 is reused, not replaced by a new point of a bigger batch."""
    search_params["search"].update(workers=2, n_calls=3, n_initial_points=2)
    _, three = run(search_params, tmp_path)
    before = _seconds(tmp_path)
    search_params["search"]["n_calls"] = 4
    _, four = run(search_params, tmp_path)
    assert "3 finished trials" in capsys.readouterr().err
    assert (_seconds(tmp_path)[:3] == before).all()
    recomputed = ["told", "best_so_far"]
    pd.testing.assert_frame_equal(four[:3].drop(columns=recomputed), three.drop(columns=recomputed))
    _, fresh = run(search_params, tmp_path, name="fresh")
    pd.testing.assert_frame_equal(four, fresh)


def test_fewer_calls_keep_the_dropped_trials_for_later(search_params, tmp_path):
    """6 trials, then 3 (the log shows 3), then 6 again: trials 3 to 5 come back without running."""
    search_params["search"].update(n_calls=6, n_initial_points=3)
    _, six = run(search_params, tmp_path)
    before = _seconds(tmp_path)
    search_params["search"]["n_calls"] = 3
    _, three = run(search_params, tmp_path)
    assert len(three) == 3 and len(json.loads((tmp_path / "s/state.json").read_text())["unused"]) == 3
    search_params["search"]["n_calls"] = 6
    _, again = run(search_params, tmp_path)
    pd.testing.assert_frame_equal(again, six)
    assert (_seconds(tmp_path) == before).all()


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda text: text + "garbage,,\n", "row 8: unreadable"),
        (lambda text: text[: text.rindex("\n", 0, -1) + 40], "row 7: unreadable"),
        (lambda text: text + "\x00\n", "row 8: unreadable"),
    ],
    ids=["garbage line", "truncated last row", "NUL byte"],
)
def test_a_damaged_log_reuses_its_good_rows_and_names_the_bad(search_params, tmp_path, capsys, damage, named):
    search_params["search"]["n_calls"] = 6
    _, clean = run(search_params, tmp_path)
    before = _seconds(tmp_path)
    log = tmp_path / "s/trials.csv"
    log.write_text(damage(log.read_text()))
    _, rerun = run(search_params, tmp_path)
    err = capsys.readouterr().err
    assert f"{log} {named}" in err
    pd.testing.assert_frame_equal(rerun, clean)
    assert (_seconds(tmp_path)[:5] == before[:5]).all()  # only what the damage touched ran again


def _with_row(index: int, change):
    """Damage one data row (``index`` from 0) of a log's text with ``change(line)``."""

    def damage(text: str) -> str:
        lines = text.split("\n")
        lines[index + 1] = change(lines[index + 1])
        return "\n".join(lines)

    return damage


def _point_cell(line: str, cell: str) -> str:
    return line[: line.rindex(',"')] + f',"{cell}"'


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (_with_row(2, lambda line: '"' + "x" * 200_000 + '"' + line[line.index(",") :]), "field larger than"),
        (_with_row(2, lambda line: _point_cell(line, "[" * 5000 + "]" * 5000)), "nested more than 100 levels"),
        (_with_row(2, lambda line: _point_cell(line, '{""inner_lr"": ' + "1" * 5000 + "}")), "an integer of 5,000"),
        (_with_row(2, lambda line: line.replace(",", ",\x00", 1)), "trial 2 was changed after it was written"),
    ],
    ids=["200 KB cell", "deep point", "huge integer", "NUL byte"],
)
def test_a_bad_row_in_the_middle_reruns_that_trial_only(search_params, tmp_path, capsys, damage, named):
    """Every row after a damaged one is still read and reused: only the damaged trial runs again."""
    search_params["search"]["n_calls"] = 6
    _, clean = run(search_params, tmp_path)
    before = _seconds(tmp_path)
    log = tmp_path / "s/trials.csv"
    log.write_text(damage(log.read_text()))
    _, rerun = run(search_params, tmp_path)
    err = capsys.readouterr().err
    assert f"{log} row 4: " in err and named in err, err
    assert err.count("runs again") == 1, err
    pd.testing.assert_frame_equal(rerun, clean)
    kept = [t for t in before.index if t != 2]
    assert (_seconds(tmp_path)[kept] == before[kept]).all()


@pytest.mark.parametrize(
    "state",
    ['{"fingerprint": ' + "1" * 5000 + "}", '{"rows": ' + "[" * 5000 + "]" * 5000 + "}", b'{"a": "\xe9"}'],
    ids=["huge integer", "deep", "not UTF-8"],
)
def test_an_unreadable_state_is_not_reused(search_params, tmp_path, capsys, state):
    search_params["search"].update(n_calls=4, n_initial_points=3)
    _, clean = run(search_params, tmp_path)
    path = tmp_path / "s/state.json"
    path.write_bytes(state if isinstance(state, bytes) else state.encode())
    _, rerun = run(search_params, tmp_path)
    assert f"not reusing {tmp_path / 's/trials.csv'}: unreadable" in capsys.readouterr().err
    pd.testing.assert_frame_equal(rerun, clean)


def test_a_hand_edited_objective_is_named_and_rerun(search_params, tmp_path, capsys):
    search_params["search"]["n_calls"] = 6
    _, clean = run(search_params, tmp_path)
    log = tmp_path / "s/trials.csv"
    with open(log, newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    rows[2]["objective"] = "1e-09"
    with open(log, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    best, rerun = run(search_params, tmp_path)
    assert f"{log} row 4: trial 2 was changed after it was written; it runs again" in capsys.readouterr().err
    assert best["objective"] == clean["objective"].min() and rerun.loc[2, "objective"] == clean.loc[2, "objective"]


def test_an_unreachable_scheduler_is_named_and_needed_only_for_new_trials(search_params, tmp_path):
    """A search that only replays its log connects to nothing; one with trials to run names search.address."""
    from metahpo.errors import InputError

    search_params["search"].update(n_calls=4, n_initial_points=3)
    run(search_params, tmp_path)
    search_params["search"].update(executor="dask", address="tcp://127.0.0.1:9")  # discard port: nothing listens
    best, replayed = run(search_params, tmp_path)
    assert len(replayed) == 4
    search_params["search"]["n_calls"] = 5
    with pytest.raises(InputError, match=r"search.address: no Dask scheduler answered at 'tcp://127.0.0.1:9'"):
        run(search_params, tmp_path)
    assert len(pd.read_csv(tmp_path / "s/trials.csv")) == 4


def test_every_trial_too_costly_names_search_max_cost_not_a_divergence(search_params, tmp_path):
    from metahpo.errors import DivergenceError, InputError

    search_params["search"].update(n_calls=3, n_initial_points=3, max_cost=1e-6)
    with pytest.raises(InputError, match=r"^params.yaml: search.max_cost: all 3 trials were above it"):
        run(search_params, tmp_path)
    search_params["search"]["max_cost"] = 1.2  # some settings fit, and those fail
    with pytest.raises(DivergenceError, match=r"under search.max_cost \(\d+ (failed|too_costly), \d+ "):
        run(search_params, tmp_path, trial_fn=st.always_fails, name="mixed")
