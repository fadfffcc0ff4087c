"""ANIL with a proximal head: each inner step solves iMAML's proximal problem for the last layer exactly.

iMAML (Rajeswaran et al. 2019, "Meta-Learning with Implicit Gradients") adapts a task by minimising the
support loss plus ``(lambda / 2) |w - w0|^2``, a pull back to the meta-learned start ``w0``. For the last
layer of a regression network that problem is a ridge regression on the body's features with prior mean
``w0`` (as in Bertinetto et al. 2019's closed-form head), so it is solved exactly rather than by gradient
steps, and the meta-gradient flows through the solution into the body, the start and ``lambda``:

    w = w0 - F^T (mu I + F F^T)^-1 (F w0 - y),    mu = K O lambda / 2

where ``F`` is the support set's features with a column of ones (the bias), ``K`` the support points and
``O`` the outputs. Where the features are small this is a gradient step at rate ``1 / lambda``, so
``inner_lr`` starts the learned rate ``alpha = 1 / lambda``. A step past the first solves the problem again
from where the last one ended (a proximal-point step), which moves towards the least-squares fit. The
``K x K`` system is solved per task, so a step costs ``K^2`` feature products, not a network's backward pass.
Regression (MSE) only: the cross-entropy problem has no closed form.
"""

from __future__ import annotations

import math

import torch

from metahpo.learners.algorithms.base import STEP_KEYS, Algorithm
from metahpo.learners.mlp import Weights, head_names

RATE = "log_rate"


def proximal_head(
    features: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor, y: torch.Tensor, rate: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head ``(w, b)`` minimising each task's support MSE plus ``|(w, b) - (w0, b0)|^2 / (2 rate)``.

    ``features [tasks, K, H]``, ``w0 [tasks, H, O]``, ``b0 [tasks, 1, O]``, ``y [tasks, K, O]``.
    """
    tasks, support, _ = features.shape
    ones = torch.ones(tasks, support, 1, dtype=features.dtype, device=features.device)
    augmented = torch.cat([features, ones], dim=2)
    residual = torch.baddbmm(b0, features, w0) - y
    mu = support * y.shape[2] / (2 * rate)
    gram = torch.bmm(augmented, augmented.transpose(1, 2))
    eye = torch.eye(support, dtype=gram.dtype, device=gram.device)
    solved, info = torch.linalg.solve_ex(gram + mu * eye, residual)
    if bool((info != 0).any()):
        # Singular to float32 rounding: near-duplicate support points at a large rate, where mu is tiny beside
        # the Gram matrix. The K x K systems of the whole batch are solved again in float64.
        system = gram.double() + mu.double() * eye.double()
        solved = torch.linalg.solve(system, residual.double()).to(residual.dtype)
    change = torch.bmm(augmented.transpose(1, 2), solved)
    return w0 - change[:, :-1], b0 - change[:, -1:]


class ProximalANIL(Algorithm):
    """ANIL whose inner step is the exact solution of the head's proximal (ridge) problem."""

    name = "anil_proximal"
    label = "ANIL, proximal head"
    reference = "Rajeswaran et al. 2019"
    adapts = "head"
    adapts_by = "solving the head's proximal problem on the support set (ridge regression around its start)"
    architectures = ("mlp",)
    losses = ("mse",)
    reads = (*STEP_KEYS, "first_order_fraction")

    def rate_weights(self, config, device) -> Weights:
        """The learned rate ``alpha = 1 / lambda``, as its logarithm (so that it stays positive), from ``inner_lr``."""
        return {RATE: torch.full((1,), math.log(config.inner_lr), dtype=torch.float32, device=device)}

    def inner_step(self, learner, fast: Weights, x: torch.Tensor, y: torch.Tensor, create_graph: bool, step: int):
        """Solve the head's proximal problem from the current head; the body's features are the support set's."""
        w_name, b_name = head_names(fast)
        features = learner.embed(fast, x)
        rate = learner.inner_lrs[RATE].exp()
        if not create_graph:
            features, rate = features.detach(), rate.detach()
        w, b = proximal_head(features, fast[w_name], fast[b_name], y, rate)
        return {**fast, w_name: w, b_name: b}

    def inner_macs(self, support: int, per_point: int, head: int, steps: int) -> int:
        """The body once on the support set; each step forms the ``K x K`` Gram matrix, solves it and maps back."""
        return support * (per_point - head) + steps * (support * support * head + support**3 // 3 + 2 * support * head)
