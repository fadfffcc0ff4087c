"""Refuse settings whose meta-step cannot fit in memory, before any work starts.

The estimate is simple and errs high: per task and per inner step, second-order adaptation keeps
the fast weights, their gradients and the update (three copies of the parameters) plus the
activations, ReLU masks and back-propagated errors of every layer; the query forward keeps its
activations once more. ``benchmarks/README.md`` compares it with the memory autograd really keeps
(about 1.5x less on the MAML-paper setting).
"""

from __future__ import annotations

import os

import torch

from metahpo.errors import InputError

BYTES_PER_FLOAT = 4
USABLE_FRACTION = 0.8


def parameter_count(hidden: int, layers: int, in_features: int = 1, out_features: int = 1) -> int:
    """Weights and biases of the MLP."""
    sizes = [in_features] + [hidden] * layers + [out_features]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def meta_step_bytes(setting: dict, points: int) -> int:
    """Estimated peak memory of one meta-step (``points`` = support + query points per task)."""
    params = parameter_count(setting["hidden"], setting["layers"])
    activations = points * setting["hidden"] * setting["layers"]
    per_task = setting["inner_steps"] * (3 * params + 3 * activations) + 2 * activations
    return BYTES_PER_FLOAT * setting["meta_batch_size"] * per_task


def device_memory(device: torch.device) -> int:
    """Total memory of the device (physical RAM for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(setting: dict, points: int, device: torch.device, keys: str) -> None:
    """Raise :class:`InputError` naming ``keys`` when the estimated meta-step exceeds 80% of the device."""
    need, have = meta_step_bytes(setting, points), device_memory(device)
    if need > USABLE_FRACTION * have:
        shown = ", ".join(f"{k}={setting[k]}" for k in ("meta_batch_size", "inner_steps", "hidden", "layers"))
        raise InputError(
            f"params.yaml: {keys}: {shown} needs about {_gib(need)} per meta-step (estimate), more than "
            f"{USABLE_FRACTION:.0%} of the {device.type} memory ({_gib(have)}); lower {keys}"
        )


def largest_setting(base: dict, space: dict) -> dict:
    """The most memory-hungry corner of a search space: the largest value of every size dimension."""
    largest = dict(base)
    for name, dim in space.items():
        if name in ("meta_batch_size", "inner_steps", "hidden", "layers"):
            largest[name] = max(dim["values"]) if dim["type"] == "categorical" else dim["high"]
    return largest
