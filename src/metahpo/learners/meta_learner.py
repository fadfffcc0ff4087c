"""Meta-learners sharing one adaptation core, vectorised over the task batch.

What differs between learners (what adapts, the inner step, the outputs on the query points, the extra
parameters) is declared by each learner's entry in :mod:`metahpo.learners.algorithms`; this module asks the
entry of ``config.algorithm`` and compares no algorithm names. The MAML family adapts per-task copies of
the weights with gradient steps on the support set:

* ``maml``: second-order MAML (the meta-gradient differentiates through the inner updates);
* ``fomaml``: first-order MAML (inner gradients are treated as constants);
* ``metasgd``: Meta-SGD, per-parameter inner learning rates meta-learned with the initialisation;
* ``anil``: Almost No Inner Loop, only the last layer is adapted (second order);
* ``protomaml``: Proto-MAML, MAML whose head starts each task at the prototypical network of its support set
  (conv net only).

Three options of MAML++ (Antoniou et al., "How to train your MAML", 2019) apply to them:

* ``inner_rates: lslr`` learns one inner rate per layer tensor and per step (Meta-SGD: per parameter and per
  step), initialised at ``inner_lr``; steps past the trained ones reuse the last step's rates;
* the multi-step loss (``meta_loss(step_weights=...)``) weights the query loss after every inner step;
* derivative-order annealing (``meta_loss(first_order=True)``) takes a second-order learner's meta-gradient
  first order, as ``fomaml`` does.

``protonet`` (prototypical networks, classification only) is the metric-based baseline: it does not
adapt by gradient steps but classifies each query by its distance to the class means ("prototypes")
of the support embeddings, which are the network's features before its last layer.

The network is the MLP of :mod:`metahpo.learners.mlp` (``arch: mlp``; images are flattened) or the conv net
of :mod:`metahpo.learners.conv` (``arch: conv``), with ``mse`` loss for regression or ``cross_entropy`` for
classification. The MLP's inner gradients are written out as batched matrix products; the conv net's
come from one ``autograd.grad`` of the *sum* of the per-task losses with respect to the task-expanded
weights: tasks do not interact, so each task's slice of that gradient is exactly its own gradient.

Two more families share the interface (``docs/learners.md``):

* ``cnp``: a conditional neural process (model-based), which adapts by conditioning on the support set,
  with no inner step (:mod:`metahpo.learners.cnp`; MLP only);
* ``learned_optimizer``: MAML's initialisation adapted by a learned coordinatewise update rule
  (:mod:`metahpo.learners.learned_rule`), second order; ``learned_optimizer_fo`` treats the inner
  gradients as constants, as Andrychowicz et al. do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from metahpo.errors import DivergenceError
from metahpo.learners import EXTRA_STEPS
from metahpo.learners.algorithms.registry import algorithm
from metahpo.learners.conv import conv_features, conv_forward
from metahpo.learners.mlp import Weights, expand_to_tasks, forward, head_names, mlp_gradients


@dataclass(frozen=True)
class LearnerConfig:
    """Everything needed to rebuild a learner and adapt it the way it was meta-trained."""

    algorithm: str
    hidden: int
    layers: int
    inner_lr: float
    inner_steps: int
    arch: str = "mlp"  # mlp | conv
    input_shape: tuple[int, ...] = (1,)  # (features,) for the sinusoid, (side, side) for images
    outputs: int = 1  # 1 for regression, N (ways) for classification
    loss: str = "mse"  # mse | cross_entropy
    representation: int = 32  # cnp: size of the aggregated representation
    rule_hidden: int = 20  # learned_optimizer: hidden units of the update rule
    inner_rates: str = "fixed"  # fixed | lslr (learned per-layer per-step inner rates, MAML++)
    extra_steps: str = "safeguarded"  # safeguarded | plain: steps past inner_steps at test time (trajectory)

    def to_dict(self) -> dict:
        """Plain-JSON form of the config."""
        return {**asdict(self), "input_shape": list(self.input_shape)}


def task_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each task: ``[tasks, points, 1]`` inputs give a ``[tasks]`` output."""
    return (prediction - target).pow(2).mean(dim=(1, 2))


def task_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each task: logits ``[tasks, points, classes]``, labels ``[tasks, points]``."""
    per_point = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    return per_point.view(labels.shape).mean(dim=1)


def task_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of correctly classified points of each task."""
    return (logits.argmax(dim=-1) == labels).double().mean(dim=1)


def _mlp_features(weights: Weights, x: torch.Tensor) -> torch.Tensor:
    """The MLP's last hidden activations (its input to the output layer)."""
    body = {n: w for n, w in weights.items() if n not in head_names(weights)}
    return torch.relu(forward(body, x))


def _per_task(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values [tasks]`` shaped to broadcast over a task-expanded weight ``like [tasks, ...]``, in its dtype."""
    shaped = values.view(-1, *([1] * (like.dim() - 1)))
    return shaped if shaped.dtype == torch.bool else shaped.to(like.dtype)


class MetaLearner(torch.nn.Module):
    """A network initialisation (plus Meta-SGD's inner rates, or a learned update rule) that adapts to tasks."""

    def __init__(self, config: LearnerConfig, generator: torch.Generator, device: torch.device | str = "cpu"):
        super().__init__()
        self.algorithm = algorithm(config.algorithm)  # the learner's entry: what it adapts, and how
        if config.extra_steps not in EXTRA_STEPS:
            raise ValueError(f"extra_steps: expected one of {', '.join(EXTRA_STEPS)}, got {config.extra_steps!r}")
        self.config = config
        self.conv = config.arch == "conv"
        self.classifies = config.loss == "cross_entropy"
        self.weights = torch.nn.ParameterDict(
            {
                name: torch.nn.Parameter(w)
                for name, w in self.algorithm.initial_weights(config, generator, device).items()
            }
        )
        self.adapted = self.algorithm.adapted_names(self.weights, self.conv)
        self.inner_lrs = torch.nn.ParameterDict()
        self.per_step = config.inner_rates == "lslr" and self.algorithm.lslr
        per_parameter = self.algorithm.per_parameter_rates
        steps = (max(config.inner_steps, 1),) if self.per_step else ()
        for name in self.adapted if per_parameter or self.per_step else ():
            # Meta-SGD: a rate per parameter; LSLR: a rate per layer tensor (and per step).
            shape = (*steps, *self.weights[name].shape) if per_parameter else steps
            self.inner_lrs[name] = torch.nn.Parameter(
                torch.full(shape, config.inner_lr, dtype=self.weights[name].dtype, device=self.weights[name].device)
            )
        for name, w in self.algorithm.rate_weights(config, device).items():
            self.inner_lrs[name] = torch.nn.Parameter(w)
        self.rule = torch.nn.ParameterDict()
        for name, w in self.algorithm.rule_weights(config, generator, device).items():
            self.rule[name] = torch.nn.Parameter(w)

    def shared_weights(self) -> Weights:
        """The meta-learned weights by name (the module's own table: ``dict(self.weights)`` walks it key by key)."""
        return dict(self.weights._parameters)

    @property
    def second_order(self) -> bool:
        """Whether the meta-gradient differentiates through the inner updates."""
        return not self.algorithm.first_order

    def predict(self, fast: Weights, x: torch.Tensor) -> torch.Tensor:
        """Network outputs ``[tasks, points, outputs]`` with task weights ``fast``."""
        return conv_forward(fast, x) if self.conv else forward(fast, x)

    def embed(self, fast: Weights, x: torch.Tensor) -> torch.Tensor:
        """Features before the last layer ``[tasks, points, features]`` (the prototypical embedding)."""
        return conv_features(fast, x) if self.conv else _mlp_features(fast, x)

    def task_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of each task ``[tasks]``."""
        return task_cross_entropy(prediction, target) if self.classifies else task_mse(prediction, target)

    def query_outputs(self, fast: Weights, support_x, support_y, query_x) -> torch.Tensor:
        """Outputs on the query points: the adapted network's, prototype scores for ``protonet``, or the CNP's."""
        return self.algorithm.query_outputs(self, fast, support_x, support_y, query_x)

    def _gradients(self, fast: Weights, x: torch.Tensor, y: torch.Tensor, create_graph: bool) -> list[torch.Tensor]:
        if not self.conv:
            return mlp_gradients(fast, x, y, self.adapted, self.config.loss)
        loss = self.task_loss(self.predict(fast, x), y).sum()
        return list(torch.autograd.grad(loss, [fast[n] for n in self.adapted], create_graph=create_graph))

    def gradient_step(self, fast: Weights, x: torch.Tensor, y: torch.Tensor, create_graph: bool, step: int) -> Weights:
        """The task weights after one gradient step on ``(x, y)`` by the learner's rule (:meth:`Algorithm.step`)."""
        grads = self._gradients(fast, x, y, create_graph)
        if not create_graph:
            grads = [g.detach() for g in grads]
        new = self.algorithm.step(self, [fast[n] for n in self.adapted], grads, step)
        return {**fast, **dict(zip(self.adapted, new))}

    def _inner_step(self, fast: Weights, x: torch.Tensor, y: torch.Tensor, create_graph: bool, step: int) -> Weights:
        if not self.adapted:
            return fast
        return self.algorithm.inner_step(self, fast, x, y, create_graph, step)

    def adapt(self, x: torch.Tensor, y: torch.Tensor, steps: int | None = None, first_order: bool = False) -> Weights:
        """Task-specific weights after ``steps`` inner updates on ``(x, y)``, differentiable for meta-training.

        ``first_order`` treats the inner gradients as constants even for a second-order algorithm.
        """
        return self._adapted(x, y, steps, first_order)[-1]

    def _adapted(self, x, y, steps: int | None, first_order: bool) -> list[Weights]:
        """Task weights after 0, 1, ..., ``steps`` differentiable inner updates."""
        steps = self.config.inner_steps if steps is None else steps
        fast = [self.algorithm.task_start(self, expand_to_tasks(self.shared_weights(), x.shape[0]), x, y)]
        for step in range(steps):
            fast.append(self._inner_step(fast[-1], x, y, create_graph=self.second_order and not first_order, step=step))
        return fast

    def _query_loss(self, fast: Weights, support_x, support_y, query_x, query_y) -> torch.Tensor:
        outputs = self.query_outputs(fast, support_x, support_y, query_x)
        if self.classifies:
            return task_cross_entropy(outputs, query_y).mean()
        # Every task has the same number of query points, so the mean of the per-task MSEs is the plain MSE.
        return torch.nn.functional.mse_loss(outputs, query_y)

    def meta_loss(
        self,
        support_x,
        support_y,
        query_x,
        query_y,
        steps: int | None = None,
        step_weights: list[float] | None = None,
        first_order: bool = False,
    ) -> torch.Tensor:
        """Mean query loss over the task batch after adapting on each task's support set (``steps`` steps).

        ``step_weights`` (one per inner step) makes it MAML++'s multi-step loss: the weighted sum of the query
        losses after every step; None scores the last step alone. ``first_order`` treats the inner gradients
        as constants (derivative-order annealing).
        """
        if not self.algorithm.per_task_weights:  # the CNP reads the shared weights: no task copies to make
            return self._query_loss({}, support_x, support_y, query_x, query_y)
        trajectory = self._adapted(support_x, support_y, steps, first_order)
        if step_weights is None or len(trajectory) == 1:
            return self._query_loss(trajectory[-1], support_x, support_y, query_x, query_y)
        if len(step_weights) != len(trajectory) - 1:
            raise ValueError(f"step_weights: expected {len(trajectory) - 1} weights, got {len(step_weights)}")
        losses = [
            weight * self._query_loss(fast, support_x, support_y, query_x, query_y)
            for weight, fast in zip(step_weights, trajectory[1:])
            if weight
        ]
        return torch.stack(losses).sum()

    def trajectory(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> Iterator[Weights]:
        """Yield detached task weights after 0, 1, ..., ``steps`` inner updates (for evaluation).

        The first ``inner_steps`` steps are the trained rule's. Past them, with ``extra_steps: safeguarded``,
        a task keeps a step only where its support loss does not rise; otherwise it keeps its weights and
        halves its later steps. A rule meta-trained for a few steps (Meta-SGD's learned rates, LSLR) can
        overshoot when it is repeated; this keeps every task's support loss monotone from there on, using
        the support set alone. ``plain`` repeats the rule unchecked.
        """
        with torch.no_grad():
            shared = {n: w.detach().expand(x.shape[0], *w.shape) for n, w in self.weights.items()}
            fast = self.algorithm.task_start(self, shared, x, y)
        yield fast
        guarded = self.config.extra_steps == "safeguarded" and bool(self.adapted)
        scale, loss = torch.ones(x.shape[0], dtype=torch.float64, device=x.device), None
        for step in range(steps):
            with torch.enable_grad():
                leaves = {n: (w.clone().requires_grad_(True) if n in self.adapted else w) for n, w in fast.items()}
                stepped = {
                    n: w.detach() for n, w in self._inner_step(leaves, x, y, create_graph=False, step=step).items()
                }
            if guarded and step >= self.config.inner_steps:
                if loss is None:
                    loss = self._support_loss(fast, x, y)
                tried = {n: fast[n] + _per_task(scale, fast[n]) * (stepped[n] - fast[n]) for n in self.adapted}
                tried_loss = self._support_loss({**fast, **tried}, x, y)
                kept = tried_loss <= loss  # False for a NaN
                stepped = {**fast, **{n: torch.where(_per_task(kept, fast[n]), tried[n], fast[n]) for n in tried}}
                loss = torch.where(kept, tried_loss, loss)
                scale = torch.where(kept, scale, scale / 2)
            fast = stepped
            yield fast

    def _support_loss(self, fast: Weights, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each task's loss on its own support set ``[tasks]`` (float64, for the safeguard's comparisons)."""
        with torch.no_grad():
            return self.task_loss(self.query_outputs(fast, x, y, x), y).double()

    def check_finite(self) -> None:
        """Raise :class:`DivergenceError` if any meta-parameter is NaN or infinite."""
        for name, p in self.named_parameters():
            if not torch.isfinite(p).all():
                raise DivergenceError(f"meta-parameter {name} is not finite")
