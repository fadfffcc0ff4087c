"""What a learner is: the class every meta-learner's own file subclasses and registers.

A learner declares what it adapts, whether it takes inner steps, which optional meta-hyperparameters it
reads, the extra parameters it meta-learns, its inner step, its outputs on the query points, the terms of
the cost model and of the memory guard, and the published results it is quoted beside. The defaults here
are MAML's: every weight adapted by plain gradient steps at ``inner_lr`` (or at learned rates), the
network's outputs, second order. :class:`metahpo.learners.meta_learner.MetaLearner` asks a learner's entry
for all of this instead of comparing algorithm names.
"""

from __future__ import annotations

import math

import torch

from metahpo.learners.conv import init_conv_weights
from metahpo.learners.mlp import Weights, head_names, init_weights, layer_sizes
from metahpo.learners.sizes import conv_activations, layer_macs, weight_count

# The kinds of meta-learning a learner belongs to; the search compares the searched kinds side by side.
KIND_NAMES = ("maml_family", "learned_optimizer", "cnp", "metric")
# Which weights adapt to a task: every one, the last layer only, or none (a learner without inner steps).
ADAPTS = ("all", "head", "none")
# Meta-hyperparameters that only some learners read (the others ignore them and the search pins them), in the
# order :data:`metahpo.learners.USED_ONLY_BY` lists them.
OPTIONAL_KEYS = (
    "inner_lr",
    "inner_steps",
    "representation",
    "rule_hidden",
    "inner_rates",
    "multi_step_loss",
    "first_order_fraction",
)
# What every learner that adapts by inner gradient steps reads.
STEP_KEYS = ("inner_lr", "inner_steps", "multi_step_loss")


class Algorithm:
    """A meta-learner: the declarations and the behaviour that differ between learners.

    Subclasses set the class attributes below and override the methods where they differ from MAML's;
    one instance of each is listed in :mod:`metahpo.learners.algorithms.registry`.

    Attributes:
        name: the value of ``meta.algorithm`` (and of a search's ``algorithm`` dimension).
        kind: one of :data:`KIND_NAMES`.
        label: the learner's name in reports and published tables, such as ``Meta-SGD``.
        reference: the paper it follows.
        searched: whether ``meta.algorithm`` may choose it; False for a baseline the train stage adds itself.
        first_order: the meta-gradient treats the inner gradients as constants.
        takes_steps: it adapts by inner steps (False: it is scored at 0 steps and every step repeats that).
        adapts: which weights its inner steps change, one of :data:`ADAPTS`.
        adapts_by: how it adapts to a task, in words.
        lslr: ``inner_rates: lslr`` gives it learned per-layer (Meta-SGD: per-parameter) per-step rates.
        per_parameter_rates: it meta-learns one inner rate per parameter (Meta-SGD).
        per_task_weights: its query outputs read per-task copies of the weights (False: the shared ones).
        architectures: the values of ``model.arch`` it runs on.
        losses: the losses it trains with (``mse``: regression; ``cross_entropy``: classification).
        reads: the keys of :data:`OPTIONAL_KEYS` it reads.
        one_step_sinusoid: published sinusoid MSE after one step, ``{K: (low, high, 95% half-width or
            None)}`` (Li et al. 2017, Table 1), or None.
    """

    name: str = ""
    kind: str = "maml_family"
    label: str = ""
    reference: str = ""
    searched: bool = True
    first_order: bool = False
    takes_steps: bool = True
    adapts: str = "all"
    adapts_by: str = "gradient steps on the support set"
    lslr: bool = False
    per_parameter_rates: bool = False
    per_task_weights: bool = True
    architectures: tuple[str, ...] = ("mlp", "conv")
    losses: tuple[str, ...] = ("mse", "cross_entropy")
    reads: tuple[str, ...] = ()
    one_step_sinusoid: dict[int, tuple[float, float, float | None]] | None = None

    @property
    def second_order(self) -> bool:
        """Whether the meta-gradient differentiates through the inner updates (MAML++'s annealing applies)."""
        return self.takes_steps and not self.first_order

    @property
    def learned_rule(self) -> bool:
        """Whether its inner steps follow a meta-learned update rule."""
        return self.kind == "learned_optimizer"

    def __repr__(self) -> str:
        return f"<learner {self.name}>"

    # The network and what adapts.

    def initial_weights(self, config, generator: torch.Generator, device) -> Weights:
        """Freshly initialised network weights for ``config`` (a :class:`LearnerConfig`)."""
        in_features = math.prod(config.input_shape)
        if config.arch == "conv":
            return init_conv_weights(
                config.hidden, config.layers, config.input_shape[-1], config.outputs, generator, device
            )
        return init_weights(layer_sizes(config.hidden, config.layers, in_features, config.outputs), generator, device)

    def rate_weights(self, config, device) -> Weights:
        """Inner-step parameters it meta-learns besides Meta-SGD's and LSLR's rates (none by default)."""
        return {}

    def rule_weights(self, config, generator: torch.Generator, device) -> Weights:
        """The weights of a meta-learned update rule, drawn after the network's (none by default)."""
        return {}

    def adapted_names(self, weights: Weights, conv: bool) -> list[str]:
        """The names of the weights that the inner steps change, in the network's order."""
        if self.adapts == "none":
            return []
        if self.adapts == "head":
            return ["head_w", "head_b"] if conv else list(head_names(weights))
        return list(weights)

    # Adapting and predicting.

    def task_start(self, learner, fast: Weights, support_x, support_y) -> Weights:
        """Each task's weights before its first inner step, from the shared ones ``fast`` (those, by default)."""
        return fast

    def inner_step(self, learner, fast: Weights, x: torch.Tensor, y: torch.Tensor, create_graph: bool, step: int):
        """The task weights after inner step ``step`` on the support set ``(x, y)`` (a gradient step by default)."""
        return learner.gradient_step(fast, x, y, create_graph, step)

    def step(self, learner, current: list[torch.Tensor], grads: list[torch.Tensor], step: int) -> list[torch.Tensor]:
        """The adapted weights after inner step ``step`` from ``current`` with gradients ``grads``.

        Plain gradient descent at ``inner_lr``, or at the learner's learned rates (Meta-SGD's, LSLR's).
        """
        if learner.inner_lrs:
            rates = [learner.inner_lrs[n] for n in learner.adapted]
            if learner.per_step:  # steps past the trained ones keep the last step's rates
                index = min(step, rates[0].shape[0] - 1)
                rates = [r[index] for r in rates]
            return torch._foreach_sub(current, torch._foreach_mul(grads, rates))
        return torch._foreach_add(current, grads, alpha=-learner.config.inner_lr)

    def query_outputs(self, learner, fast: Weights, support_x, support_y, query_x) -> torch.Tensor:
        """Outputs ``[tasks, points, outputs]`` on the query points with the task weights ``fast``."""
        return learner.predict(fast, query_x)

    # The cost model (metahpo.learners.cost) and the memory guard (metahpo.learners.memory).

    def task_macs(self, setting: dict, support: int, query: int, arch: str, side: int, outputs: int) -> float:
        """Estimated multiply-adds of one meta-iteration on one task (see :mod:`metahpo.learners.cost`)."""
        macs = layer_macs(setting["hidden"], setting["layers"], arch, side, outputs)
        per_point, head = sum(macs), macs[-1]
        steps = setting["inner_steps"]
        forward_q = query * per_point
        inner = self.inner_macs(support, per_point, head, steps)
        first_order = 1.0 if self.first_order else setting.get("first_order_fraction", 0.0)
        backward = first_order * 2 * forward_q + (1 - first_order) * 2 * (inner + forward_q)
        per_task = inner + forward_q + backward
        per_task += setting.get("multi_step_loss", 0.0) * (steps - 1) * 3 * forward_q
        return per_task + self.rule_macs(setting, arch, side, outputs)

    def inner_macs(self, support: int, per_point: int, head: int, steps: int) -> int:
        """Multiply-adds of the inner steps on one task: a forward and a backward pass over the support set."""
        return steps * 3 * support * per_point

    def rule_macs(self, setting: dict, arch: str, side: int, outputs: int) -> int:
        """Multiply-adds of a learned update rule over all inner steps on one task (none by default)."""
        return 0

    def task_values(self, setting: dict, points: int, arch: str, side: int, outputs: int) -> int:
        """Values one meta-step keeps per task at its peak (see :mod:`metahpo.learners.memory`)."""
        hidden, layers = setting["hidden"], setting["layers"]
        params = weight_count(hidden, layers, arch, side, outputs, biases=True)
        activations = points * conv_activations(hidden, layers, side) if arch == "conv" else points * hidden * layers
        per_step = 3 * params + 3 * activations + self.rule_values(setting, params)
        per_task = setting["inner_steps"] * per_step + 2 * activations
        if setting.get("multi_step_loss", 0.0) > 0:
            per_task += (setting["inner_steps"] - 1) * 2 * activations
        return per_task

    def rule_values(self, setting: dict, params: int) -> int:
        """Values a learned update rule keeps per inner step for ``params`` coordinates (none by default)."""
        return 0
