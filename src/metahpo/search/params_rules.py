"""The params rules that need the learners' and the search's own names: registered with the core schema.

:mod:`metahpo.params` names these vocabularies without importing the packages that own them; importing
``metahpo.search`` (every stage does) fills them in and adds the checks that read them.
"""

from __future__ import annotations

import importlib.util

import metahpo.search as search
from metahpo.learners import ALGORITHMS, ARCHITECTURES, EXTRA_STEPS, INNER_RATES, OUTER_SCHEDULES, USED_ONLY_BY
from metahpo.learners.algorithms.registry import algorithm
from metahpo.params import Params, register_names, register_rule
from metahpo.search.plan import plan_problems
from metahpo.space import space_algorithms


@register_rule
def rung_plan(params: Params) -> list[str]:
    """A multi-fidelity plan left with a single rung (see :func:`metahpo.search.plan.plan_problems`)."""
    s = params.search
    if s.fidelity == "none" or s.min_iterations >= s.iterations:  # the latter is refused by the schema itself
        return []
    return plan_problems(s.iterations, s.min_iterations, s.eta, ("search.iterations", "search.min_iterations",
                                                                 "search.eta"))  # fmt: skip


@register_rule
def algorithm_rules(params: Params):
    """A learner on an architecture or tasks it does not run on, and search dimensions that no algorithm of the
    search reads."""
    arch, space, fixed = params.model.arch, params.search.space, params.meta.algorithm
    # The family's loss (metahpo.learners.family), derived here so that the params check, which every stage runs
    # first, does not import the learners' training code.
    task = "classification" if params.tasks.classification else "regression"
    loss = "cross_entropy" if params.tasks.classification else "mse"
    chosen = [("meta.algorithm", fixed, "")] + [
        ("search.space.algorithm", name, f" (remove {name} from its values)")
        for name in space.get("algorithm", {}).get("values", [])
    ]
    for key, name, remove in chosen:
        if name not in ALGORITHMS:
            continue
        entry = algorithm(name)
        if arch not in entry.architectures:
            yield f"{key}: {name} needs model.arch: {', '.join(entry.architectures)}, got {arch}{remove}"
        if loss not in entry.losses:
            yield f"{key}: {name} does not run on {task} tasks (tasks.family: {params.tasks.family}){remove}"
    tried = space_algorithms(space, fixed)
    for name in space:
        if not set(users := USED_ONLY_BY.get(name, tried)) & set(tried):
            yield (f"search.space.{name}: read only by algorithm {', '.join(users)}, which this search never "
                   f"tries ({', '.join(tried)}); drop the dimension or add the algorithm to "
                   "search.space.algorithm")  # fmt: skip


@register_rule
def library_rules(params: Params):
    """What the search library (``search.fidelity: asha`` or ``search.method: tpe``) does not run."""
    s = params.search
    if not search.runs_library(s):
        return
    why = "search.fidelity: asha" if s.fidelity == "asha" else "search.method: tpe"
    if s.method not in search.LIBRARY_METHODS:
        yield f"search.method: {s.method} does not run with {why}; expected one of {', '.join(search.LIBRARY_METHODS)}"
    if s.method == "tpe" and importlib.util.find_spec("optuna") is None:
        yield "search.method: tpe needs optuna (pip install -c constraints.txt 'metahpo[tpe]')"
    if s.median_stop.enabled:
        yield f"search.median_stop.enabled: the median rule does not run with {why}; set it to false"


register_names(algorithm=ALGORITHMS, arch=ARCHITECTURES, inner_rates=INNER_RATES, extra_steps=EXTRA_STEPS,
               outer_schedule=OUTER_SCHEDULES, method=search.METHODS, acq_func=search.ACQ_FUNCS,
               executor=search.EXECUTORS, objective=search.OBJECTIVES, fidelity=search.FIDELITIES,
               fidelity_unit=search.FIDELITY_UNITS)  # fmt: skip
