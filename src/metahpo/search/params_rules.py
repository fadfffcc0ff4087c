"""The params rules that need the learners' and the search's own names: registered with the core schema.

:mod:`metahpo.params` names these vocabularies without importing the packages that own them; importing
``metahpo.search`` (every stage does) fills them in and adds the checks that read them.
"""

from __future__ import annotations

import importlib.util

from metahpo.learners import ALGORITHMS, ARCHITECTURES, EXTRA_STEPS, INNER_RATES, OUTER_SCHEDULES, USED_ONLY_BY
from metahpo.learners.algorithms.registry import algorithm
from metahpo.params import Params, register_names, register_rule
from metahpo.search import (
    ACQ_FUNCS,
    EXECUTORS,
    FIDELITIES,
    FIDELITY_UNITS,
    LIBRARY_METHODS,
    METHODS,
    OBJECTIVES,
    runs_library,
)
from metahpo.search.plan import plan_problems
from metahpo.space import space_algorithms


def rung_plan(params: Params) -> list[str]:
    """A multi-fidelity plan left with a single rung (see :func:`metahpo.search.plan.plan_problems`)."""
    s = params.search
    if s.fidelity == "none" or s.min_iterations >= s.iterations:  # the latter is refused by the schema itself
        return []
    return plan_problems(s.iterations, s.min_iterations, s.eta, ("search.iterations", "search.min_iterations",
                                                                 "search.eta"))  # fmt: skip


def algorithm_rules(params: Params) -> list[str]:
    """A learner on an architecture it does not declare, and search dimensions that no algorithm of the search reads."""
    found, arch, space = [], params.model.arch, params.search.space
    if params.meta.algorithm in ALGORITHMS and arch not in algorithm(params.meta.algorithm).architectures:
        runs_on = ", ".join(algorithm(params.meta.algorithm).architectures)
        found.append(f"meta.algorithm: {params.meta.algorithm} needs model.arch: {runs_on}, got {arch}")
    for name in space.get("algorithm", {}).get("values", []):
        if name in ALGORITHMS and arch not in algorithm(name).architectures:
            runs_on = ", ".join(algorithm(name).architectures)
            found.append(
                f"search.space.algorithm: {name} needs model.arch: {runs_on}, got {arch} "
                f"(remove {name} from its values)"
            )
    tried = space_algorithms(space, params.meta.algorithm)
    for name in space:
        users = USED_ONLY_BY.get(name, tried)
        if not set(users) & set(tried):
            found.append(
                f"search.space.{name}: read only by algorithm {', '.join(users)}, which this search never tries "
                f"({', '.join(tried)}); drop the dimension or add the algorithm to search.space.algorithm"
            )
    return found


def library_rules(params: Params) -> list[str]:
    """What the search library (``search.fidelity: asha`` or ``search.method: tpe``) does not run."""
    s, found = params.search, []
    if not runs_library(s):
        return []
    why = "search.fidelity: asha" if s.fidelity == "asha" else "search.method: tpe"
    if s.method not in LIBRARY_METHODS:
        found.append(f"search.method: {s.method} does not run with {why}; expected one of {', '.join(LIBRARY_METHODS)}")
    if s.method == "tpe" and importlib.util.find_spec("optuna") is None:
        found.append("search.method: tpe needs optuna (pip install -c constraints.txt 'metahpo[tpe]')")
    if s.median_stop.enabled:
        found.append(f"search.median_stop.enabled: the median rule does not run with {why}; set it to false")
    if s.start_from_default:
        found.append(f"search.start_from_default: not available with {why}; set it to false")
    if s.fidelity_unit != "iterations":
        found.append(f"search.fidelity_unit: {s.fidelity_unit} is not available with {why}; use iterations")
    return found


register_names(
    algorithm=ALGORITHMS,
    arch=ARCHITECTURES,
    inner_rates=INNER_RATES,
    extra_steps=EXTRA_STEPS,
    outer_schedule=OUTER_SCHEDULES,
    method=METHODS,
    acq_func=ACQ_FUNCS,
    executor=EXECUTORS,
    objective=OBJECTIVES,
    fidelity=FIDELITIES,
    fidelity_unit=FIDELITY_UNITS,
)
register_rule(rung_plan)
register_rule(algorithm_rules)
register_rule(library_rules)
