"""Estimated compute of one meta-iteration, in multiply-adds, for every learner and architecture.

A deterministic count, beside the memory estimate of :mod:`metahpo.learners.memory`, from which the
search can tell what a setting will cost before it trains it. Per task, with ``F(P)`` the multiply-adds
of one forward pass over ``P`` points:

* an inner step is a forward and a backward pass over the support set: ``3 F(S)``;
* the query forward with the adapted weights: ``F(Q)``;
* the outer backward costs twice the graph it runs through: the query forward only for first-order
  MAML (``2 F(Q)``); every inner step as well for second-order MAML and Meta-SGD (differentiating
  through the inner backward passes), which makes them about twice as costly per step;
* ANIL runs the body once on the support set and adapts only the head, so its inner steps and their
  second-order backward cost the head's share;
* a prototypical network embeds support and query once and back-propagates: ``3 (F(S) + F(Q))``;
* a conditional neural process encodes the support set and decodes every query (classification: every
  query against every class representation), then back-propagates: ``3 (E(S) + D(Q))``;
* a learned update rule costs MAML's (or first-order MAML's) count plus, per inner step, its small MLP
  on every weight coordinate, forward and backward: ``3 W R`` for ``W`` weights and ``R`` multiply-adds
  of the rule per coordinate;
* MAML++'s options, as the mean over a run: derivative-order annealing trains a second-order learner first
  order for ``first_order_fraction`` of it (the first-order backward for that share); the multi-step loss
  adds, for ``multi_step_loss`` of it, the query forward and backward after every step but the last
  (``3 F(Q)`` each); learned per-step rates (``inner_rates: lslr``) are element-wise and cost nothing here.

Each learner's terms are its own (:mod:`metahpo.learners.algorithms`): the MAML count above is the default
of :meth:`~metahpo.learners.algorithms.base.Algorithm.task_macs`, ANIL's inner steps, the learned rule's MLP,
the prototypical network's and the CNP's counts are overrides in their files.

Element-wise work (activations, the inner updates, Meta-SGD's rates, batch normalisation, pooling) is
small beside the matrix products and left out. ``benchmarks/cost_model.py`` compares the estimate with
measured seconds per iteration over a spread of settings.
"""

from __future__ import annotations

from metahpo.learners.algorithms.registry import algorithm
from metahpo.learners.family import family_of
from metahpo.learners.memory import SIZE_KEYS
from metahpo.learners.settings import default_setting
from metahpo.params import Params
from metahpo.space import smallest_value, space_algorithms


def meta_iteration_macs(
    setting: dict, support: int, query: int, arch: str = "mlp", side: int = 1, outputs: int = 1
) -> int:
    """Estimated multiply-adds of one meta-iteration of ``setting`` (``support``/``query`` points per task).

    ``side`` is the MLP's input size, or the image side for ``arch: conv`` (:func:`metahpo.learners.sizes.layer_macs`).
    """
    per_task = algorithm(setting["algorithm"]).task_macs(setting, support, query, arch, side, outputs)
    return round(setting["meta_batch_size"] * per_task)


def setting_macs(setting: dict, params: Params) -> int:
    """Estimated multiply-adds of one meta-iteration of ``setting`` on the task family of ``params``."""
    shape = family_of(params).step_shape(setting)
    support = params.tasks.shots * (params.tasks.ways if params.tasks.classification else 1)
    arch = {k: shape[k] for k in ("arch", "side", "outputs") if k in shape}
    return meta_iteration_macs(setting, support, shape["points"] - support, **arch)


def affordable_iterations(iterations: int, cost: int, baseline: int) -> int:
    """Iterations at ``cost`` per iteration that take the compute of ``iterations`` at ``baseline`` (at least 1)."""
    return max(1, iterations * baseline // cost)


def trained_iterations(setting: dict, params: Params, budget: int) -> int:
    """Iterations ``setting`` trains for a budget (a rung, or ``search.iterations``) of ``budget``.

    With ``search.fidelity_unit: iterations`` that is ``budget``; with ``compute`` the budget is the compute of
    ``budget`` iterations of the untuned setting, so a setting of half its estimated cost trains twice as many.
    A function of the setting alone, so each rung of a trial is a prefix of its last one.
    """
    if params.search.fidelity_unit == "iterations":
        return budget
    return untuned_equivalent(setting, params, budget)


def final_iterations(setting: dict, params: Params) -> int:
    """Meta-iterations of ``setting``'s final training: ``train.iterations``, or fewer under ``train.compute``.

    ``train.compute`` (None: no cap) is a compute budget in multiples of ``train.iterations`` iterations of the
    untuned setting: with 2, a setting of c times the untuned one's estimated cost per iteration trains
    ``2 * train.iterations / c`` iterations, and never more than ``train.iterations``, so the final training's
    time is bounded whatever setting the search chose.
    """
    train = params.train
    if train.compute is None:
        return train.iterations
    return min(train.iterations, untuned_equivalent(setting, params, round(train.compute * train.iterations)))


def untuned_equivalent(setting: dict, params: Params, iterations: int) -> int:
    """Iterations of ``setting`` that cost what ``iterations`` iterations of the untuned setting cost (at least 1)."""
    return affordable_iterations(
        iterations, setting_macs(setting, params), setting_macs(default_setting(params), params)
    )


def cheapest_macs(params: Params) -> int:
    """The lowest estimated cost in ``search.space``: every size at its smallest, the cheapest algorithm."""
    space, setting = params.search.space, default_setting(params)
    for name in SIZE_KEYS:
        if name in space:
            setting[name] = smallest_value(space[name])
    return min(setting_macs({**setting, "algorithm": a}, params) for a in space_algorithms(space, setting["algorithm"]))
