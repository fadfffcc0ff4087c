"""Multi-fidelity search: rung arithmetic, continuation, promotions, resume and extension."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import synthetic_trials as st
import torch

from metahpo.learners.family import zero_predictor_mse
from metahpo.params import validate
from metahpo.search.driver import Search
from metahpo.search.rungs import brackets, planned_iterations, promoted, rung_iterations, snapped_rung
from metahpo.search.trial import TrialRequest, run_trial
from metahpo.tasks.sinusoid import generate_splits

from conftest import load_default_params, shrink, two_dimension_rungs, typed


def test_rungs_grow_by_eta_up_to_the_full_run():
    assert rung_iterations(8100, 300, 3) == [300, 900, 2700, 8100]
    assert rung_iterations(10000, 1000, 3) == [1000, 3000, 10000]  # 9000 is within sqrt(3) of 10000: merged
    assert rung_iterations(300, 33, 3) == [33, 99, 300]  # not 33, 99, 297, 300
    assert snapped_rung(300, 33, 3) == 297 and snapped_rung(8100, 900, 3) is None  # named in the printed plan
    assert rung_iterations(100, 50, 2) == [50, 100]


def test_bracket_sizes_of_successive_halving_and_hyperband():
    sh = brackets("successive_halving", 4, 3, 40)
    assert [(b.first, b.size, b.start) for b in sh] == [(0, 27, 0), (27, 27, 0)]
    hb = brackets("hyperband", 4, 3, 49)
    # s = 3, 2, 1, 0: ceil(4 / (s + 1) * 3**s) trials from rung 3 - s
    assert [(b.size, b.start) for b in hb] == [(27, 0), (12, 1), (6, 2), (4, 3)]
    assert [b.first for b in hb] == [0, 27, 39, 45]
    assert sum(b.size for b in brackets("hyperband", 4, 3, 50)) == 49 + 27  # n_calls rounds up to whole brackets
    assert sum(b.size for b in brackets("hyperband", 4, 3, 5, most=8)) == 8  # a grid caps the last bracket
    # 27 x 300 + 9 x 600 + 3 x 1800 + 1 x 5400 iterations for one bracket of successive halving
    assert planned_iterations(sh[:1], [300, 900, 2700, 8100], 3) == 8100 + 5400 + 5400 + 5400


def test_promotion_keeps_the_best_third_ties_by_trial_and_never_a_failure():
    assert promoted({5: 0.3, 6: 0.1, 7: 0.2, 8: 0.9, 9: 0.5, 10: 0.4}, 3) == [6, 7]
    assert promoted({1: 0.2, 0: 0.2, 2: 0.2}, 3) == [0]
    assert promoted({0: math.nan, 1: 0.5, 2: 0.4}, 3) == [2]
    assert promoted({0: math.nan, 1: math.nan}, 3) == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("min_iterations", 15, "search.min_iterations: expected < search.iterations (15)"),
        ("eta", 1, "search.eta: expected an integer >= 2"),
        ("fidelity", "bohb", "search.fidelity: expected one of none, successive_halving, hyperband, asha"),
    ],
)
def test_bad_fidelity_settings_name_the_key(tiny_params, key, value, message):
    tiny_params["search"].update({"fidelity": "hyperband", "min_iterations": 5, key: value})
    assert any(p.startswith(message) for p in validate(tiny_params)), validate(tiny_params)


def test_fidelity_and_the_median_rule_are_not_combined(tiny_params):
    tiny_params["search"].update(fidelity="successive_halving", min_iterations=5)
    tiny_params["search"]["median_stop"]["enabled"] = True
    assert any(p.startswith("search.median_stop.enabled: the median rule and") for p in validate(tiny_params))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_promoted_trial_continues_bit_identical_to_an_uninterrupted_run(tiny_params, schedule):
    """Two rungs (8, then 20 iterations) of a 2-repeat Meta-SGD trial equal one 20-iteration trial."""
    tiny_params["search"].update(iterations=20, repeats=2)
    params = typed(tiny_params)
    splits = generate_splits(params.tasks, 0)
    data = [(splits["meta_train"], splits["meta_val"])]
    point = {"algorithm": "metasgd", "outer_schedule": schedule, "outer_lr": 0.01}
    whole = run_trial(TrialRequest(0, point, 5, params, data))
    first = run_trial(TrialRequest(0, point, 5, params, data, stop_at=8))
    assert set(first.states) == {0, 1} and all(s["step"] == 8 for s in first.states.values())
    assert first.objectives != whole.objectives
    rest = run_trial(TrialRequest(0, point, 5, params, data, stop_at=20, resume=first.states))
    assert rest.status == whole.status == "ok" and not rest.states
    assert rest.objectives == whole.objectives  # bit for bit


@pytest.fixture
def rung_params(tiny_params):
    return two_dimension_rungs(tiny_params, "hyperband")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[pd.DataFrame, list[tuple[int, int, int]]]:
    """The uninterrupted search of ``rung_params`` (run once for the module): its log and the jobs it ran."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(st.MARKER_DIR, str(root))
        _, trials = run(two_dimension_rungs(shrink(load_default_params()), "hyperband"), root, name="reference")
    return trials, jobs(root)


def run(params, tmp_path, trial_fn=st.rung_bowl, name="s"):
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    directory = tmp_path / name
    search = Search(typed(params), {"meta_train": {}, "meta_val": {}}, 10.0, directory, manifest, trial_fn)
    return search.run(), pd.read_csv(directory / "trials.csv")


def jobs(tmp_path) -> list[tuple[int, int, int]]:
    path = Path(tmp_path) / "jobs"
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()] if path.exists() else []


def test_hyperband_promotes_the_best_and_continues_them(rung_params, tmp_path, monkeypatch):
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    best, trials = run(rung_params, tmp_path)
    # rungs 100, 300, 900: brackets of 9 (from rung 0), 5 (from rung 1), 3 (full length) and 9 again
    assert len(trials) == 26 and set(trials["status"]) == {"ok", "stopped"}
    rungs = trials["rungs"].map(json.loads)
    first = trials[trials["trial"] < 9]
    assert list(first["iterations"].value_counts().sort_index()) == [6, 2, 1]  # 9 -> 3 -> 1
    for _, row in first.iterrows():
        reached = list(json.loads(row["rungs"]))
        assert reached == ["100", "300", "900"][: len(reached)]
    at_100 = {t: json.loads(r)["100"][0] for t, r in zip(first["trial"], first["rungs"])}
    assert set(first.loc[first["iterations"] >= 300, "trial"]) == set(sorted(at_100, key=at_100.get)[:3])
    assert (trials.loc[trials["status"] == "ok", "iterations"] == 900).all()
    assert best["objective"] == trials.loc[trials["status"] == "ok", "objective"].min()
    assert rungs.map(len).max() == 3
    # Each (trial, rung) ran once; a trial's first rung starts from scratch, each later one where it stopped.
    ran = jobs(tmp_path)
    assert len(ran) == len(set(ran)) == sum(rungs.map(len))
    for trial in {t for t, _, _ in ran}:
        mine = sorted((stop, start) for t, start, stop in ran if t == trial)
        assert [start for _, start in mine] == [0] + [stop for stop, _ in mine[:-1]]
    assert not (tmp_path / "s/checkpoints").exists()  # removed when the search ends


def test_rung_logs_do_not_depend_on_workers_or_executor(rung_params, tmp_path):
    run(rung_params, tmp_path, name="one")
    rung_params["search"]["workers"] = 2
    run(rung_params, tmp_path, name="pool")
    rung_params["search"].update(executor="dask", address=None)
    run(rung_params, tmp_path, name="dask")
    one = (tmp_path / "one/trials.csv").read_bytes()
    assert one == (tmp_path / "pool/trials.csv").read_bytes() == (tmp_path / "dask/trials.csv").read_bytes()


@pytest.mark.parametrize("jobs_before_kill", [4, 11, 17])
def test_a_killed_rung_search_resumes_without_rerunning_a_finished_rung(
    rung_params, reference, tmp_path, monkeypatch, jobs_before_kill
):
    reference, reference_jobs = reference
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        run(rung_params, tmp_path, trial_fn=st.Interrupt(jobs_before_kill), name="s")
    before = jobs(tmp_path)
    assert len(before) == jobs_before_kill and (tmp_path / "s/trials.csv").exists()
    _, resumed = run(rung_params, tmp_path, name="s")
    pd.testing.assert_frame_equal(resumed, reference)
    # Together the two runs did exactly the uninterrupted run's jobs: no rung twice, every promotion continued.
    assert sorted(jobs(tmp_path)) == sorted(reference_jobs)


def interrupted_with_checkpoints(rung_params, tmp_path, monkeypatch) -> list[Path]:
    """The checkpoints of search ``s`` interrupted after 10 jobs."""
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        run(rung_params, tmp_path, trial_fn=st.Interrupt(10), name="s")
    checkpoints = sorted((tmp_path / "s/checkpoints").iterdir())
    assert checkpoints
    return checkpoints


def test_a_damaged_checkpoint_means_training_again_with_the_same_result(
    rung_params, reference, tmp_path, monkeypatch, capsys
):
    reference, damaged = reference[0], interrupted_with_checkpoints(rung_params, tmp_path, monkeypatch)
    for path in damaged:
        path.write_bytes(b"not a checkpoint")
    _, resumed = run(rung_params, tmp_path, name="s")
    pd.testing.assert_frame_equal(resumed, reference)
    assert f"{damaged[0]} unreadable" in capsys.readouterr().err
    assert any(start == 0 and stop > 100 for _, start, stop in jobs(tmp_path)[10:])  # retrained from scratch


def test_more_calls_add_brackets_and_reuse_every_rung(rung_params, tmp_path, monkeypatch):
    rung_params["search"]["n_calls"] = 9
    run(rung_params, tmp_path, name="s")
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    rung_params["search"]["n_calls"] = 20
    _, extended = run(rung_params, tmp_path, name="s")
    assert all(trial >= 9 for trial, _, _ in jobs(tmp_path))  # the first bracket is reused whole
    _, fresh = run(rung_params, tmp_path, name="fresh")
    pd.testing.assert_frame_equal(extended.drop(columns="told"), fresh.drop(columns="told"))


def test_failed_trials_are_never_promoted_and_told_a_penalty(rung_params, tmp_path):
    best, trials = run(rung_params, tmp_path, trial_fn=st.rung_bowl_failing_high_lr)
    failed = trials[trials["status"] == "failed"]
    assert (
        len(failed)
        and (failed["inner_lr"] > 0.3).all()
        and (trials.loc[trials["inner_lr"] > 0.3, "status"] == "failed").all()
    )
    assert (failed["rungs"].map(json.loads).map(len) == 0).all()  # they fail at their first rung, and stop there
    assert (failed["told"] >= math.log(10.0)).all() and best["point"]["inner_lr"] <= 0.3


@pytest.mark.parametrize("method", ["gp", "forest", "random", "grid"])
@pytest.mark.parametrize("fidelity", ["successive_halving", "hyperband"])
def test_every_method_runs_with_rungs(rung_params, tmp_path, method, fidelity):
    rung_params["search"].update(method=method, fidelity=fidelity, n_calls=12)
    best, trials = run(rung_params, tmp_path)
    assert len(trials) == (9 if method == "grid" else 18 if fidelity == "successive_halving" else 14)  # grid: 3 x 3
    assert (trials["status"] == "ok").sum() >= 1
    assert best["objective"] == trials.loc[trials["status"] == "ok", "objective"].min()


def test_the_surrogate_fits_the_highest_rung_with_enough_trials(rung_params, tmp_path, monkeypatch):
    """BOHB's rule: a model needs dimensions + 1 = 3 observations, taken from the highest rung that has them."""
    asked = []
    from metahpo.search import proposers

    original = proposers.RefitProposer.ask

    def spy(self, n, first_trial, observed=((), ())):
        asked.append((first_trial, len(observed[0])))
        return original(self, n, first_trial, observed)

    monkeypatch.setattr(proposers.RefitProposer, "ask", spy)
    run(rung_params, tmp_path)
    # bracket 1 (trials 0-8): nothing observed; bracket 2: the 3 trials promoted to 300 iterations
    # (the one that reached 900 is too few); one point in three stays random
    assert asked[:2] == [(0, 0), (9, 3)]


def search_real_trials(raw: dict, tmp_path) -> tuple:
    """``(params, data, best, trials)`` of a search with the real trial function on tiny sinusoid data."""
    params = typed(raw)
    splits = generate_splits(params.tasks, 0)
    data = {k: splits[k] for k in ("meta_train", "meta_val")}
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    best = Search(params, data, zero_predictor_mse(splits["meta_val"]), tmp_path / "s", manifest).run()
    return params, data, best, pd.read_csv(tmp_path / "s/trials.csv")


def test_real_trials_with_rungs_through_the_search(tiny_params, tmp_path):
    """The real trial function: rungs of 10, 30 iterations, a repeat each, states through the checkpoints."""
    tiny_params["search"].update(
        fidelity="successive_halving", iterations=30, min_iterations=10, eta=3, n_calls=3, repeats=2, workers=1
    )
    params, data, best, trials = search_real_trials(tiny_params, tmp_path)
    assert list(trials["iterations"]).count(30) == 1 and len(trials) == 3
    top = trials[trials["iterations"] == 30].iloc[0]
    # The promoted trial, trained 10 + 20 iterations, equals the same trial trained 30 at once.
    whole = run_trial(TrialRequest(int(top["trial"]), json.loads(top["point"]), int(top["seed"]), params,
                                   [(data["meta_train"], data["meta_val"])]))  # fmt: skip
    assert json.loads(top["objectives"]) == whole.objectives and best["trial"] == top["trial"]
    assert not (tmp_path / "s/checkpoints").exists()


def test_a_checkpoint_of_another_search_is_never_continued(rung_params, reference, tmp_path, monkeypatch):
    """Checkpoints carry the search's fingerprint: one left by other params means training again."""
    import torch

    reference, stale = reference[0], interrupted_with_checkpoints(rung_params, tmp_path, monkeypatch)
    for path in stale:
        saved = torch.load(path, weights_only=True)
        torch.save({**saved, "search": "another search"}, path)
    _, resumed = run(rung_params, tmp_path, name="s")
    pd.testing.assert_frame_equal(resumed, reference)
    continued = {int(p.stem.split("-")[1]) for p in stale}
    after = jobs(tmp_path)[10:]
    assert all(start == 0 for trial, start, _ in after if trial in continued)


def test_a_checkpoint_of_another_trial_is_never_continued(rung_params, reference, tmp_path, monkeypatch, capsys):
    """A mix-up puts one trial's checkpoint in every other trial's place: they train again, same log."""
    reference, stale = reference[0], interrupted_with_checkpoints(rung_params, tmp_path, monkeypatch)
    assert len(stale) > 1
    for path in stale[1:]:
        path.write_bytes(stale[0].read_bytes())
    _, resumed = run(rung_params, tmp_path, name="s")
    pd.testing.assert_frame_equal(resumed, reference)
    assert f"{stale[1]} is another trial's or search's" in capsys.readouterr().err
    mixed = {int(p.stem.split("-")[1]) for p in stale[1:]}
    assert all(start == 0 for trial, start, _ in jobs(tmp_path)[10:] if trial in mixed)


def other_setting_weights(state, params, tiny_params):
    """The weights of a wider network: right keys, wrong shapes."""
    from metahpo.learners.metatrain import build_learner
    from metahpo.learners.settings import apply_point, learner_config

    wide = apply_point(params, {"algorithm": "metasgd", "hidden": 7})
    return {**state, "weights": build_learner(learner_config(wide, params), 0, torch.device("cpu")).state_dict()}


@pytest.mark.parametrize(
    "corrupt",
    [
        other_setting_weights,
        lambda state, *_: {**state, "optimizer": {}},
        lambda state, *_: {**state, "optimizer": {**state["optimizer"], "state": {0: {"exp_avg": torch.zeros(3)}}}},
        lambda state, *_: {**state, "running": "x"},
        lambda state, *_: {**state, "generator": torch.zeros(3)},
        lambda state, *_: {**state, "since": -1},
        lambda state, *_: {k: v for k, v in state.items() if k != "weights"},
    ],
)
def test_a_malformed_state_of_the_right_step_means_training_from_the_start(tiny_params, corrupt):
    tiny_params["search"].update(iterations=20)
    params = typed(tiny_params)
    splits = generate_splits(params.tasks, 0)
    data = [(splits["meta_train"], splits["meta_val"])]
    point = {"algorithm": "metasgd", "outer_lr": 0.01}
    whole = run_trial(TrialRequest(0, point, 5, params, data))
    first = run_trial(TrialRequest(0, point, 5, params, data, stop_at=8))
    bad = {0: corrupt(first.states[0], params, tiny_params)}
    rest = run_trial(TrialRequest(0, point, 5, params, data, stop_at=20, resume=bad))
    assert rest.status == "ok", rest.error
    assert rest.objectives == whole.objectives  # trained 20 iterations from the start


def test_an_unwritable_checkpoint_folder_costs_retraining_not_the_finished_rungs(
    rung_params, reference, tmp_path, capsys
):
    reference, _ = reference
    (tmp_path / "s").mkdir()
    (tmp_path / "s/checkpoints").write_text("a file where the folder should be")
    _, trials = run(rung_params, tmp_path, name="s")
    pd.testing.assert_frame_equal(trials, reference)
    assert "s/checkpoints/trial-00000.pt: cannot write" in capsys.readouterr().err
