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

Element-wise work (activations, the inner updates, Meta-SGD's rates, batch normalisation, pooling) is
small beside the matrix products and left out. ``benchmarks/cost_model.py`` compares the estimate with
measured seconds per iteration over a spread of settings.
"""

from __future__ import annotations

from metahpo.learners import FIRST_ORDER_ALGORITHMS, LEARNED_RULE_ALGORITHMS
from metahpo.learners.conv import feature_count, feature_side
from metahpo.learners.family import family_of
from metahpo.learners.learned_rule import FEATURES
from metahpo.learners.memory import SIZE_KEYS
from metahpo.learners.settings import default_setting
from metahpo.learners.sizes import weight_count
from metahpo.params import Params
from metahpo.space import smallest_value, space_algorithms


def layer_macs(hidden: int, layers: int, arch: str = "mlp", side: int = 1, outputs: int = 1) -> list[int]:
    """Multiply-adds of each layer's forward pass for one point; the last entry is the head.

    ``side`` is the MLP's input size, or the image side for ``arch: conv`` (3x3 convolutions, each
    block's map halved by pooling while larger than 1).
    """
    if arch == "conv":  # block b convolves the map that b poolings left; the head reads the last one
        blocks = [9 * (hidden if b else 1) * hidden * feature_side(side, b) ** 2 for b in range(layers)]
        return [*blocks, feature_count(hidden, layers, side) * outputs]
    sizes = [side] + [hidden] * layers + [outputs]
    return [a * b for a, b in zip(sizes[:-1], sizes[1:])]


def cnp_macs(setting: dict, support: int, query: int, side: int = 1, outputs: int = 1) -> int:
    """Multiply-adds of a conditional neural process on one task: encode the support, decode the queries."""
    hidden, layers, representation = setting["hidden"], setting["layers"], setting["representation"]
    regression = outputs == 1
    encode = sum(layer_macs(hidden, layers, "mlp", side + (1 if regression else 0), representation))
    decode = sum(layer_macs(hidden, layers, "mlp", side + representation, 1))
    return support * encode + query * (1 if regression else outputs) * decode


def meta_iteration_macs(
    setting: dict, support: int, query: int, arch: str = "mlp", side: int = 1, outputs: int = 1
) -> int:
    """Estimated multiply-adds of one meta-iteration of ``setting`` (``support``/``query`` points per task)."""
    macs = layer_macs(setting["hidden"], setting["layers"], arch, side, outputs)
    per_point, head = sum(macs), macs[-1]
    steps, algorithm = setting["inner_steps"], setting["algorithm"]
    forward_s, forward_q = support * per_point, query * per_point
    if algorithm == "protonet":
        per_task = 3 * (forward_s + forward_q)
    elif algorithm == "cnp":
        per_task = 3 * cnp_macs(setting, support, query, side, outputs)
    else:
        if algorithm == "anil":
            inner = support * (per_point - head) + steps * 3 * support * head
        else:
            inner = steps * 3 * forward_s
        first_order = 1.0 if algorithm in FIRST_ORDER_ALGORITHMS else setting.get("first_order_fraction", 0.0)
        backward = first_order * 2 * forward_q + (1 - first_order) * 2 * (inner + forward_q)
        per_task = inner + forward_q + backward
        per_task += setting.get("multi_step_loss", 0.0) * (steps - 1) * 3 * forward_q
        if algorithm in LEARNED_RULE_ALGORITHMS:
            rule = FEATURES * setting["rule_hidden"] + setting["rule_hidden"] * 2
            per_task += steps * 3 * weight_count(setting["hidden"], setting["layers"], arch, side, outputs) * rule
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
    return affordable_iterations(budget, setting_macs(setting, params), setting_macs(default_setting(params), params))


def cheapest_macs(params: Params) -> int:
    """The lowest estimated cost in ``search.space``: every size at its smallest, the cheapest algorithm."""
    space, setting = params.search.space, default_setting(params)
    for name in SIZE_KEYS:
        if name in space:
            setting[name] = smallest_value(space[name])
    return min(setting_macs({**setting, "algorithm": a}, params) for a in space_algorithms(space, setting["algorithm"]))
