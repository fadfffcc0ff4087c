"""The cost model: multiply-adds of one meta-iteration, by learner and architecture."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from metahpo.learners.algorithms.cnp import cnp_macs
from metahpo.learners.cnp import init_cnp_weights
from metahpo.learners.conv import conv_forward, feature_count, init_conv_weights
from metahpo.learners.cost import meta_iteration_macs
from metahpo.learners.memory import meta_step_bytes
from metahpo.learners.sizes import layer_macs, weight_count

SETTING = {
    "algorithm": "maml", "hidden": 40, "layers": 2, "inner_steps": 1, "meta_batch_size": 25,
    "representation": 32, "rule_hidden": 20,
}  # fmt: skip


def test_layer_counts_match_the_networks_weights():
    mlp = layer_macs(40, 2)
    assert sum(mlp) == weight_count(40, 2, biases=True) - (40 + 40 + 1)  # every weight once per point, biases aside
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


def test_a_proximal_head_costs_the_body_once_and_a_support_squared_system_per_step():
    support, query, steps = 10, 7, 2
    macs = layer_macs(40, 2)
    per_point, head = sum(macs), macs[-1]
    inner = support * (per_point - head) + steps * (support**2 * head + support**3 // 3 + 2 * support * head)
    expected = inner + query * per_point + 2 * (inner + query * per_point)  # second order: differentiated through
    setting = {**SETTING, "algorithm": "anil_proximal", "inner_steps": steps}
    assert meta_iteration_macs(setting, support, query) == 25 * expected
    more = meta_iteration_macs(setting, 2 * support, query) - meta_iteration_macs(setting, support, query)
    anil = {**setting, "algorithm": "anil"}
    assert more > meta_iteration_macs(anil, 2 * support, query) - meta_iteration_macs(anil, support, query)


def test_cost_scales_with_the_batch_and_the_points():
    base = meta_iteration_macs(SETTING, 10, 10)
    assert meta_iteration_macs({**SETTING, "meta_batch_size": 50}, 10, 10) == 2 * base
    assert meta_iteration_macs(SETTING, 20, 20) == 2 * base
    wide = meta_iteration_macs({**SETTING, "hidden": 80}, 10, 10)
    assert wide > 3 * base  # the hidden-to-hidden product grows with the square of the width


def test_a_cnp_costs_its_encoder_on_the_support_and_its_decoder_on_the_queries():
    weights = init_cnp_weights(40, 2, 32, 1, 1, torch.Generator().manual_seed(0))
    per_point = {
        p: sum(w.numel() for n, w in weights.items() if n.startswith(p) and "_w" in n) for p in ("enc_", "dec_")
    }
    assert cnp_macs(SETTING, 10, 7) == 10 * per_point["enc_"] + 7 * per_point["dec_"]
    ways = init_cnp_weights(40, 2, 32, 64, 5, torch.Generator().manual_seed(0))
    decoder = sum(w.numel() for n, w in ways.items() if n.startswith("dec_w"))
    assert cnp_macs(SETTING, 5, 5, side=64, outputs=5) - cnp_macs(SETTING, 5, 0, side=64, outputs=5) == 5 * 5 * decoder
    assert meta_iteration_macs({**SETTING, "algorithm": "cnp"}, 10, 7) == 25 * 3 * cnp_macs(SETTING, 10, 7)


def test_a_learned_rule_adds_its_mlp_on_every_weight_at_every_step():
    for rule, plain in (("learned_optimizer", "maml"), ("learned_optimizer_fo", "fomaml")):
        for steps in (1, 3):
            setting = {**SETTING, "inner_steps": steps}
            extra = meta_iteration_macs({**setting, "algorithm": rule}, 10, 10) - meta_iteration_macs(
                {**setting, "algorithm": plain}, 10, 10
            )
            assert extra == 25 * steps * 3 * weight_count(40, 2) * (4 * 20 + 20 * 2)
    assert weight_count(40, 2) == 1 * 40 + 40 * 40 + 40 * 1


def measured_conv_macs(width: int, blocks: int, side: int, outputs: int) -> tuple[int, int]:
    """``(per image, head)``: multiply-adds of the real conv net's forward pass on one image, counted by torch."""
    weights = init_conv_weights(width, blocks, side, outputs, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        conv_forward({n: w.unsqueeze(0) for n, w in weights.items()}, torch.zeros(1, 1, side, side))  # 1 task, 1 image
    flops = counter.get_flop_counts()["Global"]
    head = sum(n for op, n in flops.items() if "bmm" in str(op)) // 2
    return counter.get_total_flops() // 2, head


def test_the_conv_count_is_the_real_networks():
    for width, blocks, side, outputs in ((32, 4, 28, 5), (16, 3, 8, 20), (8, 2, 11, 5)):
        macs = layer_macs(width, blocks, "conv", side, outputs)
        assert (sum(macs), macs[-1]) == measured_conv_macs(width, blocks, side, outputs)
        weights = init_conv_weights(width, blocks, side, outputs, torch.Generator().manual_seed(0))
        every = sum(w.numel() for w in weights.values())
        assert weight_count(width, blocks, "conv", side, outputs, biases=True) == every
        kernels = sum(w.numel() for n, w in weights.items() if n.startswith("conv") or n == "head_w")
        assert weight_count(width, blocks, "conv", side, outputs) == kernels


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil", "protonet", "learned_optimizer"])
def test_every_learner_costs_its_documented_passes_on_the_conv_net(algorithm):
    # 5-way 1-shot on 28x28 images: 5 support and 10 query images per task, forward passes counted by torch.
    support, query, steps, batch = 5, 10, 2, 25
    per_image, head = measured_conv_macs(32, 4, 28, 5)
    forward_s, forward_q = support * per_image, query * per_image
    inner = steps * 3 * forward_s
    expected = {
        "maml": inner + forward_q + 2 * (inner + forward_q),
        "fomaml": inner + forward_q + 2 * forward_q,
        "protonet": 3 * (forward_s + forward_q),
        # the body once on the support set, then the head's share of every inner step, all differentiated through
        "anil": 3 * (support * (per_image - head) + steps * 3 * support * head + forward_q),
    }
    rule = 4 * 20 + 20 * 2  # the learned rule's MLP per coordinate: 4 features -> 20 hidden -> 2
    expected["learned_optimizer"] = expected["maml"] + steps * 3 * weight_count(32, 4, "conv", 28, 5) * rule
    setting = {**SETTING, "algorithm": algorithm, "hidden": 32, "layers": 4, "inner_steps": steps}
    assert meta_iteration_macs(setting, support, query, "conv", 28, 5) == batch * expected[algorithm]


def test_maml_plus_plus_options_cost_their_share_of_the_run():
    base = {**SETTING, "inner_steps": 3}
    second, first = meta_iteration_macs(base, 10, 10), meta_iteration_macs({**base, "algorithm": "fomaml"}, 10, 10)
    # Derivative-order annealing: the first-order share of the run costs first-order MAML's backward.
    half = meta_iteration_macs({**base, "first_order_fraction": 0.5}, 10, 10)
    assert half == (second + first) // 2
    assert meta_iteration_macs({**base, "first_order_fraction": 1.0}, 10, 10) == first
    assert meta_iteration_macs({**base, "algorithm": "fomaml", "first_order_fraction": 0.5}, 10, 10) == first
    # Multi-step loss: the query forward and backward after each step but the last, for its share of the run.
    query_pass = 10 * sum(layer_macs(40, 2))
    assert meta_iteration_macs({**base, "multi_step_loss": 1.0}, 10, 10) == second + 25 * 2 * 3 * query_pass
    assert meta_iteration_macs({**SETTING, "multi_step_loss": 1.0}, 10, 10) == meta_iteration_macs(SETTING, 10, 10)
    # Learned per-step rates are element-wise work.
    assert meta_iteration_macs({**base, "inner_rates": "lslr"}, 10, 10) == second


def test_the_multi_step_loss_adds_memory_and_the_other_options_do_not():
    base = {**SETTING, "inner_steps": 3}
    plain = meta_step_bytes(base, 20)
    assert meta_step_bytes({**base, "multi_step_loss": 0.5}, 20) > plain
    assert meta_step_bytes({**base, "inner_rates": "lslr", "first_order_fraction": 0.5}, 20) == plain
