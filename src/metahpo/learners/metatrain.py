"""Meta-training loop: sample task batches from the meta-train pool and take outer Adam steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from metahpo.errors import DivergenceError
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.tasks.episodes import EpisodePool
from metahpo.tasks.sinusoid import TaskPool


@dataclass(frozen=True)
class TrainSettings:
    """How long and how fast to meta-train."""

    iterations: int
    meta_batch_size: int
    outer_lr: float
    outer_schedule: str
    shots: int
    query: int
    adapt_steps: int | None = None  # inner steps during meta-training; None: the learner's own (0: plain regression)
    multi_step_loss: float = 0.0  # MAML++: fraction of the run over which the per-step loss weights anneal
    first_order_fraction: float = 0.0  # MAML++: fraction of the run trained first order (derivative-order annealing)


def multi_step_weights(steps: int, progress: float, fraction: float) -> list[float] | None:
    """MAML++'s per-step query-loss weights at ``progress`` (0 to 1) of a run; None: the last step alone.

    The weights start equal (1/steps each) and move linearly to the last step alone over the first
    ``fraction`` of the run (0: never a multi-step loss); they always sum to 1.
    """
    if steps <= 1 or progress >= fraction:
        return None
    t = progress / fraction
    return [(1 - t) / steps + (t if s == steps - 1 else 0.0) for s in range(steps)]


def build_learner(config: LearnerConfig, seed: int, device: torch.device) -> MetaLearner:
    """A freshly initialised learner; the same seed gives the same initial weights."""
    return MetaLearner(config, torch.Generator().manual_seed(seed), device)


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` with the per-step bookkeeping done once: the same update, bit for bit.

    torch's step regroups the parameters, reads their state and increments every parameter's step
    counter with a separate operation before it calls the fused kernel; on the CPU that costs several
    times the kernel for a network of small tensors. Once every parameter has its state, this step calls
    the same kernel with lists kept from the last step, the step counters being views of one tensor that
    a single addition increments. Whenever that does not apply (the first step, after
    ``load_state_dict``, a parameter without a gradient, a closure, a gradient scaler, an option the
    shortcut does not handle) it takes torch's own step, which updates the same state tensors in place.
    ``zero_grad()`` drops the gradients without torch's bookkeeping for the zeroing it does not do.
    """

    def __init__(self, params, lr: float):
        super().__init__(params, lr=lr, fused=True)
        self._kept: tuple | None = None
        self._keep = True

    def load_state_dict(self, state_dict: dict) -> None:
        self._kept, self._keep = None, True
        super().load_state_dict(state_dict)

    def add_param_group(self, param_group: dict) -> None:
        self._kept, self._keep = None, True
        super().add_param_group(param_group)

    def _keep_lists(self) -> tuple | None:
        """The kernel's lists, with every step counter made a view of one tensor; None where torch's step must run."""
        if len(self.param_groups) != 1:
            return None
        group = self.param_groups[0]
        if group["amsgrad"] or group["maximize"] or group["weight_decay"] or group["differentiable"]:
            return None
        if group["decoupled_weight_decay"] or isinstance(group["lr"], torch.Tensor):
            return None
        states = [self.state.get(p) for p in group["params"]]
        if not all(states):
            return None
        steps = torch.stack([s["step"] for s in states])
        for i, s in enumerate(states):
            s["step"] = steps[i]
        return (
            group["params"],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["step"] for s in states],
            steps,
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            super().zero_grad(set_to_none)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        # A gradient scaler (mixed precision) hands the kernel its scale through these attributes.
        scaled = getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None
        if self._kept is not None and closure is None and not scaled:
            params, exp_avgs, exp_avg_sqs, steps, counter = self._kept
            grads = [p.grad for p in params]
            if all(g is not None for g in grads):
                group = self.param_groups[0]
                beta1, beta2 = group["betas"]
                counter.add_(1)
                torch._fused_adam_(
                    params, grads, exp_avgs, exp_avg_sqs, [], steps,
                    amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0,
                    eps=group["eps"], maximize=False, grad_scale=None, found_inf=None,
                )  # fmt: skip
                return None
        # Adam's own step, without the hooks that the wrapper of this step has already run (torch wraps
        # ``Adam.step`` the same way once any plain Adam exists).
        adam_step = torch.optim.Adam.step
        loss = (adam_step.__wrapped__ if getattr(adam_step, "hooked", False) else adam_step)(self, closure)
        if self._kept is None and self._keep:
            self._kept = self._keep_lists()
            self._keep = self._kept is not None
        return loss


def make_optimizer(learner: MetaLearner, lr: float) -> torch.optim.Adam:
    """The outer optimiser: Adam, fused into one kernel per step (:class:`FusedAdam`: same update, less overhead)."""
    return FusedAdam(learner.parameters(), lr)


def meta_train(
    learner: MetaLearner,
    pool: TaskPool | EpisodePool,
    settings: TrainSettings,
    seed: int,
    log_every: int = 0,
    on_log: Callable[[int, float], None] | None = None,
    progress: str | None = None,
    *,
    stop_at: int | None = None,
    state: dict | None = None,
) -> dict:
    """Meta-train ``learner`` in place with Adam on the outer loss (constant or cosine-annealed rate).

    The run is ``settings.iterations`` long (the cosine schedule's horizon). ``stop_at`` ends it early, and
    the returned training state (step, weights, optimiser and schedule state, sampling generator, running
    loss) lets a later call continue it with ``state=``: a run stopped and continued any number of times
    is bit-identical to an uninterrupted one. Every ``log_every`` iterations ``on_log(step, mean loss
    since the last call)`` is called. Raises :class:`DivergenceError` as soon as a loss or a
    meta-parameter is found to be NaN or infinite, so divergent weights are never handed back.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(learner, settings.outer_lr)
    schedule = None
    if settings.outer_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.iterations)
    check_every = log_every or max(1, settings.iterations // 20)
    running = torch.zeros((), device=next(learner.parameters()).device)
    since, first = 0, 1
    if state is not None:
        since, first = _restore(state, learner, optimizer, schedule, generator, running)
    last = settings.iterations if stop_at is None else stop_at
    bar = tqdm(range(first, last + 1), desc=progress, disable=progress is None, mininterval=1.0, leave=False)
    for step in bar:
        batch = pool.sample(settings.meta_batch_size, settings.shots, settings.query, generator)
        progress = (step - 1) / settings.iterations  # of the whole run, so a stopped run continues the same
        steps = learner.config.inner_steps if settings.adapt_steps is None else settings.adapt_steps
        loss = learner.meta_loss(
            *batch,
            steps=settings.adapt_steps,
            step_weights=multi_step_weights(steps, progress, settings.multi_step_loss),
            first_order=progress < settings.first_order_fraction,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        running += loss.detach()
        since += 1
        if step % check_every == 0 or step == settings.iterations:
            mean = (running / since).item()
            if not math.isfinite(mean):
                raise DivergenceError(
                    f"meta-loss is {mean} at iteration {step} (try a smaller inner or outer learning rate)"
                )
            if on_log is not None and log_every:
                on_log(step, mean)
            bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
            running.zero_()
            since = 0
    learner.check_finite()
    return on_cpu(
        {
            "step": last,
            "weights": learner.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict() if schedule is not None else None,
            "generator": generator.get_state(),
            "running": running,
            "since": since,
        }
    )


class StateError(ValueError):
    """A training state to continue from does not fit the learner (another setting's, or malformed)."""


def _restore(state, learner, optimizer, schedule, generator, running) -> tuple[int, int]:
    """Load ``state`` into the training's objects; ``(since, first step)``. Raises :class:`StateError`.

    Shapes are checked here because loading does not: an optimiser state of other shapes would only
    fail (or broadcast) at the next step.
    """
    try:
        learner.load_state_dict(state["weights"])
        optimizer.load_state_dict(state["optimizer"])
        for param in learner.parameters():
            for value in optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise ValueError(f"optimiser state of shape {tuple(value.shape)} for {tuple(param.shape)}")
        if schedule is not None:
            schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        if not (isinstance(state["running"], torch.Tensor) and state["running"].numel() == 1):
            raise ValueError("running loss is not one number")
        running.copy_(state["running"].reshape(()))
        since, step = state["since"], state["step"]
        if not (type(since) is int and type(step) is int and since >= 0 and step >= 0):
            raise ValueError("since and step must be counts")
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the state is not this training's
        raise StateError(f"training state does not fit ({type(exc).__name__}: {str(exc)[:200]})") from None
    return since, step + 1


def on_cpu(value):
    """A copy of nested dicts, lists and tensors with every tensor detached on the CPU (states travel and persist)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(on_cpu(v) for v in value)
    return value
