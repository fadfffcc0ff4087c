"""Refuse settings whose meta-step cannot fit in memory, before any work starts.

The estimate is simple and errs high: per task and per inner step, second-order adaptation keeps
the fast weights, their gradients and the update (three copies of the parameters) plus the
activations, ReLU masks and back-propagated errors of every layer; the query forward keeps its
activations once more; for the conv net, the activations of a point are every block's feature maps.
A learned update rule adds, per coordinate and step, its features, hidden units and outputs three
times over; a CNP takes no inner step and keeps its encoder's and decoder's weights and activations
(the decoder's once per class) three times over. MAML++'s multi-step loss keeps the query activations
after every step; its per-step rates and first-order phase add nothing to the peak (the second-order
phase sets it).
Each learner's terms are its own (:meth:`~metahpo.learners.algorithms.base.Algorithm.task_values`: the
network's count above by default, the learned rule's and the CNP's in their files).
``benchmarks/README.md`` compares the estimate with the memory autograd really keeps (about 1.5x less
on the MAML-paper setting).
"""

from __future__ import annotations

import torch

from metahpo.errors import InputError
from metahpo.learners.algorithms.registry import algorithm
from metahpo.learners.family import family_of
from metahpo.params import Params, SearchParams
from metahpo.resources import gib, physical_memory, usable_cores
from metahpo.space import largest_value, space_algorithms

BYTES_PER_FLOAT = 4
USABLE_FRACTION = 0.8
# The meta-hyperparameters that the memory of a meta-step grows with.
SIZE_KEYS = ("meta_batch_size", "inner_steps", "hidden", "layers", "query", "representation", "rule_hidden")


def meta_step_bytes(setting: dict, points: int, arch: str = "mlp", side: int = 1, outputs: int = 1) -> int:
    """Estimated peak memory of one meta-step (``points`` = support + query points per task).

    ``side`` is the image side for ``arch: conv`` (the MLP's input size otherwise).
    """
    per_task = algorithm(setting["algorithm"]).task_values(setting, points, arch, side, outputs)
    return BYTES_PER_FLOAT * setting["meta_batch_size"] * per_task


def device_memory(device: torch.device) -> int:
    """Total memory of the device (physical RAM for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return physical_memory()


def check_fits(setting: dict, params: Params, device: torch.device, keys: str, copies: int = 1) -> None:
    """Raise :class:`InputError` naming ``keys`` when ``copies`` meta-steps at once exceed 80% of the device."""
    need = meta_step_bytes(setting, **family_of(params).step_shape(setting))
    have = device_memory(device)
    if copies * need > USABLE_FRACTION * have:
        shown = ", ".join(f"{k}={setting[k]}" for k in ("algorithm", *SIZE_KEYS))
        times = f" times {copies} workers" if copies > 1 else ""
        raise InputError(
            f"params.yaml: {keys}: {shown} needs about {gib(need)} per meta-step (estimate){times}, more than "
            f"{USABLE_FRACTION:.0%} of the {device.type} memory ({gib(have)}); lower {keys}"
        )


def local_workers(search: SearchParams) -> int:
    """Trials this machine runs at once: ``search.workers``, unless they run on a Dask cluster elsewhere."""
    return 1 if search.executor == "dask" and search.address is not None else search.workers


def check_workers(search: SearchParams) -> None:
    """Refuse more local worker processes than this process may use cores (each runs one thread)."""
    cores = usable_cores()
    if local_workers(search) > cores:
        raise InputError(
            f"params.yaml: search.workers: {search.workers} worker processes on this machine's {cores} cores "
            f"would only slow each other down; use at most {cores}, or a Dask cluster (search.address)"
        )


def largest_settings(base: dict, space: dict) -> list[dict]:
    """The most memory-hungry corners of a search space: the largest value of every size dimension, one
    setting per algorithm the search tries (their memory grows with different keys)."""
    largest = dict(base)
    for name, dim in space.items():
        if name in SIZE_KEYS:
            largest[name] = largest_value(dim)
    return [{**largest, "algorithm": a} for a in space_algorithms(space, base["algorithm"])]
