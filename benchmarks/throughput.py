"""Meta-training throughput and memory: metahpo against per-task loops, in the same process.

Setting (the MAML paper's sinusoid): 1-40-40-1 ReLU MLP, K=10 support + 10 query points per task,
second-order MAML, Adam outer step. Three implementations of the same meta-step:

* ``metahpo``: ``metahpo.learners.MetaLearner`` (batched over tasks);
* ``l2l loop``: a per-task loop written the way learn2learn's ``MAML.clone().adapt()`` does it
  (clone the module, adapt with ``autograd.grad(create_graph=True)`` and write the updated tensors
  back into the clone's modules, accumulate the query losses, one backward);
* ``functional loop``: the same per-task loop with ``torch.func.functional_call`` on a dict of
  tensors instead of module clones (a leaner per-task baseline);
* ``higher``: ``higher.innerloop_ctx`` with a differentiable SGD inner optimiser, task by task.

The conditional neural process, the learned optimizer (second order) and ANIL with a proximal head are timed
the same way against per-task versions of themselves (``--table others``): a CNP of two 1-40-40 MLPs
(representation 32), the 1-40-40-1 MLP adapted by a 4-20-2 update rule, and the 1-40-40-1 MLP whose head
solves its ridge problem task by task (the normal equations in the head's 41 dimensions).

MAML++'s options (``--table maml++``) are timed on second-order MAML against the same ``functional loop``
with the option written in: learned per-layer per-step rates (``lslr``), the multi-step loss (equal weights,
the annealing phase's cost) and the first-order phase of derivative-order annealing.

Usage: ``python benchmarks/throughput.py [--threads N] [--seconds S] [--table maml|others|maml++|all]``.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import statistics
import time

import torch

from metahpo.learners.learned_rule import preprocess_gradient
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.learners.metatrain import make_optimizer

INNER_LR = 0.01


def sinusoid_batch(n_tasks: int, generator: torch.Generator, shots: int = 10, query: int = 10):
    """A batch of sinusoid tasks: support and query inputs/targets ``[tasks, points, 1]``."""
    amplitude = torch.rand(n_tasks, 1, 1, generator=generator) * 4.9 + 0.1
    phase = torch.rand(n_tasks, 1, 1, generator=generator) * torch.pi
    x = torch.rand(n_tasks, shots + query, 1, generator=generator) * 10 - 5
    y = amplitude * torch.sin(x - phase)
    return x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:]


def metahpo_step(steps: int, algorithm: str = "maml", option: str | None = None):
    """metahpo's batched meta-step; ``option`` is one of MAML++'s (:data:`MAML_PLUS_PLUS`) or None."""
    rates = "lslr" if option == "lslr" else "fixed"
    config = LearnerConfig(algorithm, 40, 2, INNER_LR, steps, inner_rates=rates)
    learner = MetaLearner(config, torch.Generator().manual_seed(0))
    optimizer = make_optimizer(learner, 1e-3)
    step_weights = [1 / steps] * steps if option == "multi_step_loss" else None

    def step(batch):
        loss = learner.meta_loss(*batch, step_weights=step_weights, first_order=option == "first_order")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def _sequential(inputs: int = 1, outputs: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, 40),
        torch.nn.ReLU(),
        torch.nn.Linear(40, 40),
        torch.nn.ReLU(),
        torch.nn.Linear(40, outputs),
    )


def clone_module(module: torch.nn.Module) -> torch.nn.Module:
    """learn2learn's ``clone_module``: a shallow copy of every submodule with differentiable parameter clones."""
    clone = copy.copy(module)
    clone._parameters = {k: (p.clone() if p is not None else None) for k, p in module._parameters.items()}
    clone._buffers = dict(module._buffers)
    clone._modules = {k: clone_module(m) for k, m in module._modules.items()}
    return clone


def update_module(module: torch.nn.Module, updates: list[torch.Tensor]) -> None:
    """learn2learn's ``update_module``: write ``p - lr * g`` tensors back into the modules, in order."""
    it = iter(updates)
    for m in module.modules():
        for k in m._parameters:
            m._parameters[k] = next(it)


def l2l_loop_step(steps: int):
    """learn2learn-style: clone the module, adapt each task with create_graph=True, accumulate, one backward."""
    model = _sequential()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def step(batch):
        sx, sy, qx, qy = batch
        optimizer.zero_grad()
        total = 0.0
        for t in range(sx.shape[0]):
            learner = clone_module(model)
            for _ in range(steps):
                params = [p for m in learner.modules() for p in m._parameters.values()]
                loss = torch.nn.functional.mse_loss(learner(sx[t]), sy[t])
                grads = torch.autograd.grad(loss, params, create_graph=True)
                update_module(learner, [p - INNER_LR * g for p, g in zip(params, grads)])
            total = total + torch.nn.functional.mse_loss(learner(qx[t]), qy[t])
        (total / sx.shape[0]).backward()
        optimizer.step()

    return step


def functional_loop(model: torch.nn.Module, optimizer, update, steps: int):
    """Per-task loop over a dict of tensors with ``functional_call``: adapt by ``update``, accumulate, one backward.

    ``update(g, w, progress)`` is the step taken from weight ``w`` with gradient ``g`` at inner step ``progress``.
    """
    names = [n for n, _ in model.named_parameters()]

    def step(batch):
        sx, sy, qx, qy = batch
        optimizer.zero_grad()
        total = 0.0
        for t in range(sx.shape[0]):
            fast = dict(model.named_parameters())
            for k in range(steps):
                loss = torch.nn.functional.mse_loss(torch.func.functional_call(model, fast, (sx[t],)), sy[t])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
                fast = {n: w - update(g, w, k / steps) for n, w, g in zip(names, fast.values(), grads)}
            total = total + torch.nn.functional.mse_loss(torch.func.functional_call(model, fast, (qx[t],)), qy[t])
        (total / sx.shape[0]).backward()
        optimizer.step()

    return step


def loop_step(steps: int):
    """MAML's inner SGD step in :func:`functional_loop`."""
    model = _sequential()
    return functional_loop(model, torch.optim.Adam(model.parameters(), 1e-3), lambda g, w, k: INNER_LR * g, steps)


def higher_step(steps: int):
    import higher

    model = _sequential()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    inner = torch.optim.SGD(model.parameters(), lr=INNER_LR)

    def step(batch):
        sx, sy, qx, qy = batch
        optimizer.zero_grad()
        for t in range(sx.shape[0]):
            with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(steps):
                    diffopt.step(torch.nn.functional.mse_loss(fmodel(sx[t]), sy[t]))
                (torch.nn.functional.mse_loss(fmodel(qx[t]), qy[t]) / sx.shape[0]).backward()
        optimizer.step()

    return step


def plus_loop_step(option: str, steps: int):
    """Second-order MAML task by task with one of MAML++'s options written in (:func:`functional_loop`'s loop)."""
    model = _sequential()
    names = [n for n, _ in model.named_parameters()]
    rates = {n: torch.full((steps,), INNER_LR, requires_grad=True) for n in names} if option == "lslr" else {}
    optimizer = torch.optim.Adam([*model.parameters(), *rates.values()], 1e-3)
    weights = [1 / steps] * steps if option == "multi_step_loss" else [0.0] * (steps - 1) + [1.0]

    def step(batch):
        sx, sy, qx, qy = batch
        optimizer.zero_grad()
        total = 0.0
        for t in range(sx.shape[0]):
            fast = dict(model.named_parameters())
            for k in range(steps):
                loss = torch.nn.functional.mse_loss(torch.func.functional_call(model, fast, (sx[t],)), sy[t])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=option != "first_order")
                fast = {n: w - (rates[n][k] if rates else INNER_LR) * g for n, w, g in zip(names, fast.values(), grads)}
                if weights[k]:
                    query = torch.func.functional_call(model, fast, (qx[t],))
                    total = total + weights[k] * torch.nn.functional.mse_loss(query, qy[t])
        (total / sx.shape[0]).backward()
        optimizer.step()

    return step


# MAML++ option -> inner steps timed (the multi-step loss weighs nothing with one step)
MAML_PLUS_PLUS = {"lslr": (1, 5), "multi_step_loss": (5,), "first_order": (1, 5)}


def cnp_loop_step(steps: int):
    """A CNP task by task: encode the support pairs, average, decode each query point."""
    encoder, decoder = _sequential(2, 32), _sequential(33, 1)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], 1e-3)

    def step(batch):
        sx, sy, qx, qy = batch
        optimizer.zero_grad()
        total = 0.0
        for t in range(sx.shape[0]):
            r = encoder(torch.cat([sx[t], sy[t]], dim=1)).mean(dim=0)
            prediction = decoder(torch.cat([qx[t], r.expand(len(qx[t]), -1)], dim=1))
            total = total + torch.nn.functional.mse_loss(prediction, qy[t])
        (total / sx.shape[0]).backward()
        optimizer.step()

    return step


def rule_loop_step(steps: int):
    """The learned optimizer in :func:`functional_loop`: second order, task by task and tensor by tensor."""
    model, rule = _sequential(), torch.nn.Sequential(torch.nn.Linear(4, 20), torch.nn.ReLU(), torch.nn.Linear(20, 2))
    optimizer = torch.optim.Adam([*model.parameters(), *rule.parameters()], 1e-3)

    def update(g, w, progress):
        a, b = rule(torch.stack([*preprocess_gradient(g), w, torch.full_like(w, progress)], dim=-1)).unbind(-1)
        return INNER_LR * (a * g + b)

    return functional_loop(model, optimizer, update, steps)


def proximal_loop_step(steps: int):
    """ANIL with a proximal head task by task: the body's features, then the head's normal equations, solved."""
    model = _sequential()
    log_rate = torch.nn.Parameter(torch.tensor(math.log(INNER_LR)))
    optimizer = torch.optim.Adam([*model.parameters(), log_rate], 1e-3)
    body, head = model[:-1], model[-1]

    def step(batch):
        sx, sy, qx, qy = batch
        optimizer.zero_grad()
        total = 0.0
        for t in range(sx.shape[0]):
            features = torch.cat([body(sx[t]), torch.ones(len(sx[t]), 1)], dim=1)
            weights = torch.cat([head.weight.T, head.bias[None]], dim=0)
            scale = 2.0 / len(sy[t])
            for _ in range(steps):
                system = scale * features.T @ features + torch.eye(len(weights)) / log_rate.exp()
                weights = torch.linalg.solve(system, scale * features.T @ sy[t] + weights / log_rate.exp())
            query = torch.cat([body(qx[t]), torch.ones(len(qx[t]), 1)], dim=1)
            total = total + torch.nn.functional.mse_loss(query @ weights, qy[t])
        (total / sx.shape[0]).backward()
        optimizer.step()

    return step


# learner -> (metahpo's batched step, the per-task loop, inner steps timed)
OTHER_LEARNERS = {
    "cnp": (lambda steps: metahpo_step(steps, "cnp"), cnp_loop_step, (0,)),
    "learned_optimizer": (lambda steps: metahpo_step(steps, "learned_optimizer"), rule_loop_step, (1, 5)),
    "anil_proximal": (lambda steps: metahpo_step(steps, "anil_proximal"), proximal_loop_step, (1, 5)),
}

IMPLEMENTATIONS = {
    "metahpo": metahpo_step,
    "l2l loop": l2l_loop_step,
    "functional loop": loop_step,
    "higher": higher_step,
}


def tasks_per_second(make_step, steps: int, batch_size: int, seconds: float, repeats: int = 3) -> float:
    """Median over ``repeats`` timed windows of about ``seconds`` each, after a warm-up."""
    step = make_step(steps)
    generator = torch.Generator().manual_seed(0)
    batches = [sinusoid_batch(batch_size, generator) for _ in range(8)]
    for b in batches[:3]:
        step(b)
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step(batches[n % len(batches)])
            n += 1
        rates.append(n * batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def saved_tensor_bytes(make_step, steps: int, batch_size: int) -> int:
    """Bytes of tensors autograd keeps for the backward pass of one meta-step (activation memory)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.untyped_storage().nbytes()
        return t

    step = make_step(steps)
    batch = sinusoid_batch(batch_size, torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(batch)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the pipeline uses 1 per process)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timed window")
    parser.add_argument(
        "--table", choices=("maml", "others", "maml++", "all"), default="all", help="which tables to print"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.table in ("maml", "all"):
        maml_tables(args.seconds)
    if args.table in ("others", "all"):
        other_learners_table(args.seconds)
    if args.table in ("maml++", "all"):
        plus_plus_table(args.seconds)


def plus_plus_table(seconds: float) -> None:
    """Tasks per second of second-order MAML with each MAML++ option, batched and in a per-task loop."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), second-order MAML, 1-40-40-1 MLP, K=10+10")
    print("\n| option | meta-batch | inner steps | metahpo tasks/s | per-task loop tasks/s | metahpo / loop | "
          "metahpo / metahpo without it |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for option, step_counts in MAML_PLUS_PLUS.items():
        for batch_size in (25, 100):
            for steps in step_counts:
                ours = tasks_per_second(functools.partial(metahpo_step, option=option), steps, batch_size, seconds)
                plain = tasks_per_second(metahpo_step, steps, batch_size, seconds)
                theirs = tasks_per_second(functools.partial(plus_loop_step, option), steps, batch_size, seconds)
                print(
                    f"| {option} | {batch_size} | {steps} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.1f}x "
                    f"| {ours / plain:.2f} |",
                    flush=True,
                )


def other_learners_table(seconds: float) -> None:
    """Tasks per second of the CNP and the learned optimizer, batched and in a per-task loop."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), K=10+10\n")
    print("| learner | meta-batch | inner steps | metahpo tasks/s | per-task loop tasks/s | metahpo / loop |")
    print("|---|---|---|---|---|---|")
    for name, (batched, loop, step_counts) in OTHER_LEARNERS.items():
        for batch_size in (25, 100):
            for steps in step_counts:
                ours = tasks_per_second(batched, steps, batch_size, seconds)
                theirs = tasks_per_second(loop, steps, batch_size, seconds)
                print(
                    f"| {name} | {batch_size} | {steps} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.1f}x |",
                    flush=True,
                )


def maml_tables(seconds: float) -> None:
    """Second-order MAML against the per-task loops and higher; the memory autograd keeps."""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), second-order MAML, 1-40-40-1 MLP, K=10+10\n"
    )
    peers = [name for name in IMPLEMENTATIONS if name != "metahpo"]
    print("| meta-batch | inner steps | " + " | ".join(f"{n} tasks/s" for n in IMPLEMENTATIONS) + " | ", end="")
    print(" | ".join(f"metahpo / {n}" for n in peers) + " |")
    print("|---" * (2 + len(IMPLEMENTATIONS) + len(peers)) + "|")
    for batch_size, steps in ((25, 1), (25, 5), (100, 1), (100, 5)):
        rate = {name: tasks_per_second(f, steps, batch_size, seconds) for name, f in IMPLEMENTATIONS.items()}
        cells = [f"{rate[n]:,.0f}" for n in IMPLEMENTATIONS] + [f"{rate['metahpo'] / rate[n]:.1f}x" for n in peers]
        print(f"| {batch_size} | {steps} | " + " | ".join(cells) + " |", flush=True)
    print("\n| inner steps | metahpo saved for backward | functional loop saved for backward | metahpo vs 1 step |")
    print("|---|---|---|---|")
    base = None
    for steps in (1, 5, 10):
        ours, loop = saved_tensor_bytes(metahpo_step, steps, 25), saved_tensor_bytes(loop_step, steps, 25)
        base = base or ours
        print(f"| {steps} | {ours / 1024:,.0f} KiB | {loop / 1024:,.0f} KiB | {ours / base:.2f}x |")


if __name__ == "__main__":
    main()
