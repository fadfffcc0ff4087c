"""``method="tpe"``: Optuna's TPESampler proposing inside metahpo's own rungs (ask/tell).

Each proposal builds a fresh in-memory study from every trial so far and asks it once, so the proposal
depends only on the observations and the seed (a replayed search asks the same points). A trial that
reached the last rung is told as complete with its value there; one still below it as pruned, with its
rungs as intermediate values, which is how TPE learns from stopped trials in Optuna's own pruners; a
failed one as failed (Optuna ignores those, as it does in its own studies).
"""

from __future__ import annotations

import math
import warnings

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(space) -> dict:
    """Optuna's distribution of each dimension of a :class:`metahpo.search.unit_space.UnitSpace`."""
    out = {}
    for name, d in zip(space.names, space.dims):
        if d["type"] == "categorical":
            out[name] = CategoricalDistribution(list(d["values"]))
        elif d["type"] == "integer":
            out[name] = IntDistribution(int(d["low"]), int(d["high"]), log=d.get("prior") == "log-uniform")
        else:
            out[name] = FloatDistribution(float(d["low"]), float(d["high"]), log=d.get("prior") == "log-uniform")
    return out


def tpe_setting(space, rungs: list[int], observed: list[tuple[dict, int, float]], seed: int) -> dict:
    """The setting TPE asks next, given every finished rung ``(setting, budget, value)`` in trial order."""
    dists = distributions(space)
    trials: dict[tuple, tuple[dict, dict[int, float]]] = {}
    for setting, budget, value in observed:
        trials.setdefault(space.key(setting), (setting, {}))[1][budget] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=0)
        )
        for setting, values in trials.values():
            last = max(values)
            finite = {b: v for b, v in values.items() if math.isfinite(v)}
            if not math.isfinite(values[last]):
                state, value = TrialState.FAIL, None
            elif last == rungs[-1]:
                state, value = TrialState.COMPLETE, values[last]
            else:
                state, value = TrialState.PRUNED, None
            study.add_trial(
                create_trial(state=state, value=value, params=setting, distributions=dists, intermediate_values=finite)
            )
        return dict(study.ask(dists).params)
