"""The cost model: multiply-adds of one meta-iteration, by learner and architecture."""

from __future__ import annotations

import pytest

from metahpo.learners.conv import feature_count
from metahpo.learners.cost import layer_macs, meta_iteration_macs
from metahpo.learners.memory import parameter_count

SETTING = {"algorithm": "maml", "hidden": 40, "layers": 2, "inner_steps": 1, "meta_batch_size": 25}


def test_layer_counts_match_the_networks_weights():
    mlp = layer_macs(40, 2)
    assert sum(mlp) == parameter_count(40, 2) - (40 + 40 + 1)  # every weight once per point, biases aside
    conv = layer_macs(32, 4, "conv", 28, 5)
    assert conv[-1] == feature_count(32, 4, 28) * 5
    assert conv[0] == 9 * 1 * 32 * 28 * 28 and conv[1] == 9 * 32 * 32 * 14 * 14
    assert layer_macs(32, 4, "conv", 8, 5)[-1] == 32 * 5  # an 8x8 digit is pooled to 1x1 after three blocks


def test_the_learners_order_as_their_work_does():
    cost = {a: meta_iteration_macs({**SETTING, "algorithm": a}, 10, 10) for a in ("maml", "fomaml", "metasgd", "anil")}
    assert cost["fomaml"] < cost["maml"] == cost["metasgd"]
    assert cost["anil"] < cost["maml"]
    steps = [meta_iteration_macs({**SETTING, "inner_steps": n}, 10, 10) for n in (1, 2, 3)]
    assert steps[0] < steps[1] < steps[2] and steps[2] - steps[1] == steps[1] - steps[0]


def test_cost_scales_with_the_batch_and_the_points():
    base = meta_iteration_macs(SETTING, 10, 10)
    assert meta_iteration_macs({**SETTING, "meta_batch_size": 50}, 10, 10) == 2 * base
    assert meta_iteration_macs(SETTING, 20, 20) == 2 * base
    wide = meta_iteration_macs({**SETTING, "hidden": 80}, 10, 10)
    assert wide > 3 * base  # the hidden-to-hidden product grows with the square of the width


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil", "protonet"])
def test_every_learner_has_a_positive_whole_cost(algorithm):
    cost = meta_iteration_macs({**SETTING, "algorithm": algorithm}, 5, 10, "conv", 28, 5)
    assert isinstance(cost, int) and cost > 0
