"""metahpo.search.minimize: the multi-fidelity search library on closed-form objectives."""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from metahpo.search import minimize
from metahpo.search.unit_space import UnitSpace

SPACE = {
    "algorithm": {"type": "categorical", "values": ["a", "b", "c"]},
    "lr": {"type": "real", "low": 1e-4, "high": 1.0, "prior": "log-uniform"},
    "width": {"type": "integer", "low": 10, "high": 100, "prior": "uniform"},
}
ACTIVE = {"width": ["a", "b"]}  # "c" does not read width
FAST = {"candidates": 64}


def bowl(setting: dict) -> float:
    """Minimum 0.05 at algorithm b, lr 0.01, width 60."""
    off = 0.0 if setting["algorithm"] == "b" else 0.5
    return 0.05 + math.log10(setting["lr"] / 0.01) ** 2 + ((setting["width"] - 60) / 40) ** 2 + off


def objective(setting: dict, budget: int, state):
    """The bowl plus a term that shrinks with the budget; the state counts the trial's rungs and checks them."""
    if state is not None:
        assert state["setting"] == setting and state["budget"] < budget
    return bowl(setting) + 2.0 / math.sqrt(budget), {"setting": dict(setting), "budget": budget}


def run(objective=objective, **kwargs):
    args = {"max_budget": 81, "min_budget": 9, "eta": 3, "n_trials": 20, "seed": 0, "active": ACTIVE, **FAST}
    return minimize(objective, SPACE, **{**args, **kwargs})


def test_finds_the_optimum_region():
    result = run(n_trials=30)
    best = result.best
    assert best["budget"] == 81 and result.rungs == [9, 27, 81]
    assert best["setting"]["algorithm"] == "b"
    assert abs(math.log10(best["setting"]["lr"] / 0.01)) < 0.5
    assert bowl(best["setting"]) < 0.3
    assert best["value"] == min(h["value"] for h in result.history if h["budget"] == 81)


@pytest.mark.e2e
def test_beats_random_search_on_most_seeds():
    wins = sum(run(seed=s).best["value"] < run(seed=s, method="random").best["value"] for s in range(5))
    assert wins >= 4


def test_same_seed_same_history_and_another_seed_differs():
    first, again, other = run(workers=2, n_trials=12), run(workers=2, n_trials=12), run(workers=2, n_trials=12, seed=1)
    assert first.history == again.history and first.best == again.best
    assert first.history != other.history


def test_a_future_objective_runs_jobs_at_once_and_gives_the_synchronous_history():
    jitter = random.Random(7)  # real durations unrelated to the virtual ones: jobs really end out of order
    in_flight, most, lock = [0], [0], threading.Condition()

    def slow(setting, budget, state):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            lock.notify_all()
            # The first job waits (at most 5 s) for a second to start, so that a loaded machine cannot finish it
            # first; a search that waited for each job before starting the next would leave most at 1.
            lock.wait_for(lambda: most[0] >= 2, timeout=5.0)
        time.sleep(jitter.uniform(0.0, 0.01))
        with lock:
            in_flight[0] -= 1
        return objective(setting, budget, state)

    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = run(workers=3, n_trials=12, n_initial=4, objective=lambda *a: pool.submit(slow, *a))
    synchronous = run(workers=3, n_trials=12, n_initial=4)
    assert threaded.history == synchronous.history and threaded.best == synchronous.best
    assert most[0] >= 2  # the jobs did run at the same time


def test_a_future_that_fails_or_gives_no_pair_is_raised():
    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(TypeError, match="^objective: expected a \\(value, state\\) pair or a future"):
            run(n_trials=2, objective=lambda *a: pool.submit(lambda: 1.0))
        with pytest.raises(ZeroDivisionError):
            run(n_trials=2, objective=lambda *a: pool.submit(lambda: 1 / 0))


@pytest.mark.parametrize(
    ("fidelity", "method"),
    [("asha", "gp"), ("hyperband", "gp"), ("successive_halving", "gp"), ("none", "gp"), ("asha", "random"),
     ("asha", "tpe"), ("hyperband", "tpe")],
)  # fmt: skip
def test_every_schedule_and_method_runs_and_never_repeats_a_setting(fidelity, method):
    result = run(fidelity=fidelity, method=method, n_trials=15, workers=2, n_initial=4)
    starts = {h["trial"]: h["setting"] for h in reversed(result.history)}
    keys = [tuple(sorted(s.items())) for s in starts.values()]
    assert len(keys) == len(set(keys)) == 15
    assert result.best["budget"] == 81
    for h in result.history:
        if h["setting"]["algorithm"] == "c":
            assert h["setting"]["width"] == 10  # pinned before deduplication


def test_history_is_in_virtual_time_and_counts_compute():
    result = run(workers=3, compute=81 * 6, n_trials=None, n_initial=4)
    used = [h["compute_used"] for h in result.history]
    assert used == sorted(used) and used[-1] == sum(
        b - ([0, *result.rungs][result.rungs.index(b)]) for b in (h["budget"] for h in result.history)
    )
    assert used[-1] >= 81 * 6 and used[-1] - 81 * 6 < 3 * 81


def test_asha_promotes_only_from_the_top_third_of_a_rung():
    result = run(n_trials=18, promote_by="rung", n_initial=4)  # one worker: each job starts when the last ends
    promotions = 0
    for i, h in enumerate(result.history):
        if h["budget"] == 9:
            continue
        below = [(e["value"], e["trial"]) for e in result.history[:i] if e["budget"] == h["budget"] // 3]
        top = sorted(below)[: len(below) // 3]
        assert h["trial"] in {t for _, t in top}
        promotions += 1
    assert promotions >= 6 and result.best["budget"] == 81


def spent_per_job(history: list[dict]) -> list[float]:
    """Each job's compute as the search counted it: the growth of ``compute_used``."""
    used = [h["compute_used"] for h in history]
    return [b - a for a, b in zip([0, *used], used)]


def charged(history: list[dict]) -> list[float]:
    """Each job's compute: its budget less the trial's budget before it (0 for a trial's first job)."""
    last, out = {}, []
    for h in history:
        out.append(h["budget"] - last.get(h["trial"], 0))
        last[h["trial"]] = h["budget"]
    return out


@pytest.mark.parametrize("fidelity", ["hyperband", "successive_halving", "asha"])
def test_a_trial_started_above_the_first_rung_pays_its_whole_budget(fidelity):
    brackets = 3 if fidelity == "asha" else 1  # asha starts trials above the first rung only as async Hyperband
    history = run(fidelity=fidelity, n_trials=17, n_initial=4, brackets=brackets).history
    steps = spent_per_job(history)
    assert steps == charged(history)
    assert fidelity == "successive_halving" or any(h["budget"] == 81 and s == 81 for h, s in zip(history, steps))


def test_async_hyperband_starts_trials_higher_and_promotes_within_their_bracket():
    result = run(n_trials=18, brackets=3, promote_by="rung", n_initial=4, workers=2)
    start, promotions = {}, 0
    for i, h in enumerate(result.history):
        trial, budget = h["trial"], h["budget"]
        if trial not in start:
            start[trial] = budget
        else:
            below = [(e["value"], e["trial"]) for e in result.history[:i]
                     if e["budget"] == budget // 3 and start[e["trial"]] == start[trial]]  # fmt: skip
            assert trial in {t for _, t in sorted(below)[: len(below) // 3]}
            promotions += 1
    counts = [sum(b == r for b in start.values()) for r in result.rungs]
    assert counts[0] > counts[1] > counts[2] > 0 and sum(counts) == 18  # Hyperband's shares 9 : 5 : 3 (10 : 5 : 3)
    assert promotions >= 3 and result.best["budget"] == 81
    plain = run(n_trials=18, promote_by="rung", n_initial=4, workers=2).history  # brackets=1: plain ASHA
    assert {t: min(h["budget"] for h in plain if h["trial"] == t) for t in range(18)} == dict.fromkeys(range(18), 9)


def test_x0_runs_first_and_the_design_follows_as_without_it():
    start = {"algorithm": "c", "lr": 0.5, "width": 99}
    plain, first = run(n_trials=10, n_initial=4), run(n_trials=10, n_initial=4, x0=[start])
    settings = {h["trial"]: h["setting"] for h in first.history}
    assert settings[0] == {**start, "width": 10}  # pinned: c does not read width
    before = {h["trial"]: h["setting"] for h in plain.history}
    assert [settings[t] for t in range(1, 5)] == [before[t] for t in range(4)]  # the design, shifted by one
    # Values come back in the space's types, and a value pinning overwrites is not checked.
    numpy_ints = run(n_trials=4, n_initial=4, x0=[{"algorithm": "b", "lr": 0.5, "width": np.int64(20)},
                                                 {"algorithm": "c", "lr": 1, "width": 10_000}])  # fmt: skip
    firsts = {h["trial"]: h["setting"] for h in numpy_ints.history}
    assert firsts[0] == {"algorithm": "b", "lr": 0.5, "width": 20} and type(firsts[0]["width"]) is int
    assert firsts[1] == {"algorithm": "c", "lr": 1.0, "width": 10} and type(firsts[1]["lr"]) is float


def test_compute_budgets_charge_the_budget_whatever_the_cost():
    cost = lambda s: s["width"] / 50  # noqa: E731
    history = run(cost=cost, compute=81 * 4, n_trials=None, n_initial=4, budget_unit="compute").history
    steps = spent_per_job(history)
    assert steps == charged(history)
    priced = run(cost=cost, compute=81 * 4, n_trials=None, n_initial=4).history  # iterations: budget times cost
    steps = spent_per_job(priced)
    assert steps == pytest.approx([c * cost(h["setting"]) for c, h in zip(charged(priced), priced)])


def test_max_cost_is_never_proposed():
    result = run(cost=lambda s: s["width"] / 50, max_cost=1.0, n_trials=12, n_initial=4)
    assert all(h["setting"]["width"] <= 50 for h in result.history)
    assert result.best["setting"]["width"] <= 50


def test_failures_are_learned_from_and_never_best():
    def f(setting, budget, state):
        if setting["lr"] > 0.1:
            return math.nan, None
        return objective(setting, budget, state)

    result = minimize(f, SPACE, max_budget=81, min_budget=9, n_trials=12, n_initial=4, active=ACTIVE, **FAST)
    failed = [h for h in result.history if h["status"] == "failed"]
    assert failed and all(h["setting"]["lr"] > 0.1 for h in failed)
    assert result.best["setting"]["lr"] <= 0.1 and math.isfinite(result.best["value"])


def test_a_small_space_is_used_up_then_refused():
    space = {"k": {"type": "integer", "low": 1, "high": 4, "prior": "uniform"}, "c": SPACE["algorithm"]}

    def f(setting, budget, state):
        return setting["k"] + 0.1 * ["a", "b", "c"].index(setting["c"]) + 1 / budget, None

    result = minimize(f, space, max_budget=27, min_budget=3, n_trials=12, **FAST)
    assert len({(h["setting"]["k"], h["setting"]["c"]) for h in result.history}) == 12
    with pytest.raises(ValueError, match="no new setting left"):
        minimize(f, space, max_budget=27, min_budget=3, n_trials=13, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_budget": 300, "min_budget": 200}, "^min_budget: 200 with eta: 3 leaves a single rung"),
        ({"eta": 1}, "^eta: expected an integer >= 2"),
        ({"max_budget": 5, "min_budget": 9}, "^max_budget: 5 is below the first rung"),
        ({"min_budget": 0}, "^min_budget: expected an integer >= 1"),
        ({"method": "bohb"}, "^method: expected one of"),
        ({"fidelity": "pbt"}, "^fidelity: expected one of"),
        ({"compute": 100}, "^compute: give exactly one of"),
        ({"n_trials": 0}, "^n_trials: expected an integer >= 1"),
        ({"workers": 0}, "^workers: expected an integer >= 1"),
        ({"transform": "sqrt"}, "^transform: expected one of"),
        ({"acq": "EI"}, "^acq: unknown option"),
        ({"xi": -0.1}, "^xi: expected a number >= 0"),
        ({"random_every": 1.5}, "^random_every: expected an integer >= 0"),
        ({"active": {"depth": ["a"]}}, "^active: 'depth' is not a dimension"),
        ({"max_cost": -1}, "^max_cost: expected a number > 0"),
        ({"brackets": 0}, "^brackets: expected an integer >= 1"),
        ({"brackets": 2, "fidelity": "hyperband"}, "^brackets: asynchronous Hyperband needs fidelity asha"),
        ({"brackets": 4}, "^brackets: 4 is more than the 3 rungs"),
        # a bool is not a count and NaN is not a number, whatever the bound
        ({"n_initial": True}, "^n_initial: expected an integer >= 1, got True"),
        ({"candidates": True}, "^candidates: expected an integer >= 1, got True"),
        ({"workers": True}, "^workers: expected an integer >= 1, got True"),
        ({"xi": float("nan")}, "^xi: expected a number >= 0, got nan"),
        ({"n_trials": None, "compute": float("nan")}, "^compute: expected a number > 0, got nan"),
        ({"max_cost": float("nan")}, "^max_cost: expected a number > 0, got nan"),
        ({"budget_unit": "flops"}, "^budget_unit: expected one of iterations, compute, got 'flops'"),
        ({"x0": {"algorithm": "a"}}, "^x0: expected a list of settings, got dict"),
        ({"x0": [{"algorithm": "a", "lr": 0.1}]}, r"^x0\[0\]: expected a mapping with exactly the dimensions"),
        ({"x0": [{"algorithm": "d", "lr": 0.1, "width": 20}]}, r"^x0\[0\].algorithm: 'd' is not one of"),
        ({"x0": [{"algorithm": "a", "lr": True, "width": 20}]}, r"^x0\[0\].lr: True is outside the space"),
        ({"x0": [{"algorithm": "a", "lr": 0.1, "width": 20}] * 21}, r"^x0: 21 settings, more than n_trials \(20\)"),
        ({"x0": [{"algorithm": "a", "lr": 2.0, "width": 20}]}, r"^x0\[0\].lr: 2.0 is outside the space"),
        ({"x0": [{"algorithm": "a", "lr": 0.1, "width": 20.5}]}, r"^x0\[0\].width: 20.5 is outside the space"),
        (
            {"x0": [{"algorithm": "c", "lr": 0.1, "width": 20}, {"algorithm": "c", "lr": 0.1, "width": 30}]},
            r"^x0\[1\]: repeats an earlier setting",
        ),  # the same once width, which c does not read, is pinned
        (
            {"x0": [{"algorithm": "a", "lr": 0.1, "width": 90}], "cost": lambda s: s["width"] / 50, "max_cost": 1.0},
            r"^x0\[0\]: costs more than max_cost",
        ),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(**kwargs)


def test_random_every_interleaves_design_points_and_xi_moves_the_model_points():
    from metahpo.search.joint_gp import Proposer

    def new_trials(result):
        return {h["trial"]: h["setting"] for h in result.history if h["budget"] == 9}

    plain, interleaved = new_trials(run(n_initial=4)), new_trials(run(n_initial=4, random_every=3))
    assert [plain[t] for t in range(6)] == [interleaved[t] for t in range(6)]  # the design, then two model points
    design = Proposer(UnitSpace(SPACE, ACTIVE), [9, 27, 81], {"initial": "sobol", "n_initial": 4}, 0, "gp", None)
    assert interleaved[6] == design.space.setting(design.sobol[4]) != plain[6]  # the design's 5th point
    assert new_trials(run(n_initial=4, xi=1.0)) != plain


def test_bad_space_and_objective_are_refused():
    with pytest.raises(ValueError, match="^space.lr.low: a log-uniform dimension needs low > 0"):
        minimize(objective, {"lr": {"type": "real", "low": 0, "high": 1, "prior": "log-uniform"}}, n_trials=2)
    with pytest.raises(ValueError, match="^space.x.type"):
        minimize(objective, {"x": {"type": "complex"}}, n_trials=2)
    with pytest.raises(TypeError, match="^objective: expected a \\(value, state\\) pair"):
        minimize(lambda s, b, st: 1.0, SPACE, max_budget=81, min_budget=9, n_trials=2)


def test_the_unit_space_round_trips_and_pins():
    space = UnitSpace(SPACE, ACTIVE)
    setting = {"algorithm": "a", "lr": 0.01, "width": 60}
    assert space.setting(space.units(setting)) == setting
    assert space.pin({"algorithm": "c", "lr": 0.5, "width": 70}) == {"algorithm": "c", "lr": 0.5, "width": 10}
