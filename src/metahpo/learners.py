"""MAML-family meta-learners sharing one adaptation core, vectorised over the task batch.

All four algorithms adapt per-task copies of the weights with gradient steps on the support set:

* ``maml``: second-order MAML (the meta-gradient differentiates through the inner updates);
* ``fomaml``: first-order MAML (inner gradients are treated as constants);
* ``metasgd``: Meta-SGD, per-parameter inner learning rates meta-learned with the initialisation;
* ``anil``: Almost No Inner Loop, only the last layer is adapted (second order).

Per-task gradients come from one ``autograd.grad`` of the *sum* of the per-task losses with
respect to the task-expanded weights: tasks do not interact, so each task's slice of that
gradient is exactly its own gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from metahpo.config import ALGORITHMS
from metahpo.errors import DivergenceError
from metahpo.model import Weights, expand_to_tasks, forward, head_names, init_weights, layer_sizes, mse_gradients


@dataclass(frozen=True)
class LearnerConfig:
    """Everything needed to rebuild a learner and adapt it the way it was meta-trained."""

    algorithm: str
    hidden: int
    layers: int
    inner_lr: float
    inner_steps: int

    def to_dict(self) -> dict:
        """Plain-JSON form of the config."""
        return asdict(self)


def task_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each task: ``[tasks, points, 1]`` inputs give a ``[tasks]`` output."""
    return (prediction - target).pow(2).mean(dim=(1, 2))


class MetaLearner(torch.nn.Module):
    """An MLP initialisation (plus, for Meta-SGD, inner learning rates) that adapts to tasks."""

    def __init__(self, config: LearnerConfig, generator: torch.Generator, device: torch.device | str = "cpu"):
        super().__init__()
        if config.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {config.algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
        self.config = config
        sizes = layer_sizes(config.hidden, config.layers)
        self.weights = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(w) for name, w in init_weights(sizes, generator, device).items()}
        )
        names = list(self.weights)
        self.adapted = list(head_names(self.weights)) if config.algorithm == "anil" else names
        self.inner_lrs = torch.nn.ParameterDict()
        if config.algorithm == "metasgd":
            for name in self.adapted:
                self.inner_lrs[name] = torch.nn.Parameter(torch.full_like(self.weights[name], config.inner_lr))

    @property
    def second_order(self) -> bool:
        """Whether the meta-gradient differentiates through the inner updates."""
        return self.config.algorithm != "fomaml"

    def _inner_step(self, fast: Weights, x: torch.Tensor, y: torch.Tensor, create_graph: bool) -> Weights:
        grads = mse_gradients(fast, x, y, self.adapted)
        if not create_graph:
            grads = [g.detach() for g in grads]
        current = [fast[n] for n in self.adapted]
        if self.inner_lrs:
            steps = torch._foreach_mul(grads, [self.inner_lrs[n] for n in self.adapted])
            new = torch._foreach_sub(current, steps)
        else:
            new = torch._foreach_add(current, grads, alpha=-self.config.inner_lr)
        return {**fast, **dict(zip(self.adapted, new))}

    def adapt(self, x: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> Weights:
        """Task-specific weights after ``steps`` inner updates on ``(x, y)``, differentiable for meta-training."""
        steps = self.config.inner_steps if steps is None else steps
        fast = expand_to_tasks(dict(self.weights), x.shape[0])
        for _ in range(steps):
            fast = self._inner_step(fast, x, y, create_graph=self.second_order)
        return fast

    def meta_loss(self, support_x, support_y, query_x, query_y, steps: int | None = None) -> torch.Tensor:
        """Mean query MSE over the task batch after adapting on each task's support set (``steps`` steps)."""
        fast = self.adapt(support_x, support_y, steps)
        # Every task has the same number of query points, so the mean of the per-task MSEs is the plain MSE.
        return torch.nn.functional.mse_loss(forward(fast, query_x), query_y)

    def trajectory(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> Iterator[Weights]:
        """Yield detached task weights after 0, 1, ..., ``steps`` inner updates (for evaluation)."""
        fast = {n: w.detach().expand(x.shape[0], *w.shape) for n, w in self.weights.items()}
        yield fast
        for _ in range(steps):
            with torch.enable_grad():
                leaves = {n: (w.clone().requires_grad_(True) if n in self.adapted else w) for n, w in fast.items()}
                stepped = self._inner_step(leaves, x, y, create_graph=False)
            fast = {n: w.detach() for n, w in stepped.items()}
            yield fast

    def check_finite(self) -> None:
        """Raise :class:`DivergenceError` if any meta-parameter is NaN or infinite."""
        for name, p in self.named_parameters():
            if not torch.isfinite(p).all():
                raise DivergenceError(f"meta-parameter {name} is not finite")
