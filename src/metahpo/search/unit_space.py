"""The search space seen through the unit cube: values, pinning of inactive dimensions, the GP's features.

Used by :func:`metahpo.search.multifidelity.minimize` and its proposers; a point of ``[0, 1]^d`` maps to a
setting dimension by dimension (log scale for log-uniform priors, equal intervals for categories).
"""

from __future__ import annotations

import math

import numpy as np


class UnitSpace:
    """The ``search.space`` mapping seen through the unit cube, with pinning of inactive dimensions."""

    def __init__(self, space: dict, active: dict | None):
        self.names = list(space)
        self.dims = [space[n] for n in self.names]
        self.active = active or {}
        self.continuous = [i for i, d in enumerate(self.dims) if d["type"] != "categorical"]
        self.categorical = [i for i, d in enumerate(self.dims) if d["type"] == "categorical"]
        sizes = [len(self.dims[i]["values"]) for i in self.categorical]
        self.n_combinations = math.prod(sizes)
        self.width = len(self.continuous) + sum(sizes)

    def value(self, i: int, u: float):
        """Dimension ``i``'s value at unit coordinate ``u``."""
        d, u = self.dims[i], min(max(float(u), 0.0), 1.0)
        if d["type"] == "categorical":
            return d["values"][min(int(u * len(d["values"])), len(d["values"]) - 1)]
        low, high = float(d["low"]), float(d["high"])
        x = low * (high / low) ** u if d.get("prior") == "log-uniform" else low + u * (high - low)
        return min(max(int(round(x)), int(d["low"])), int(d["high"])) if d["type"] == "integer" else x

    def unit(self, i: int, x) -> float:
        """Dimension ``i``'s unit coordinate of value ``x`` (a category's: the middle of its interval)."""
        d = self.dims[i]
        if d["type"] == "categorical":
            return (d["values"].index(x) + 0.5) / len(d["values"])
        low, high = float(d["low"]), float(d["high"])
        if high == low:
            return 0.5
        if d.get("prior") == "log-uniform":
            return math.log(x / low) / math.log(high / low)
        return (x - low) / (high - low)

    def pin(self, setting: dict) -> dict:
        """``setting`` with every dimension its algorithm does not read at its lowest value (first category)."""
        if not self.active or "algorithm" not in setting:
            return setting
        algorithm = setting["algorithm"]
        out = dict(setting)
        for name, readers in self.active.items():
            if name in out and algorithm not in readers:
                d = self.dims[self.names.index(name)]
                out[name] = d["values"][0] if d["type"] == "categorical" else self.value(self.names.index(name), 0.0)
        return out

    def setting(self, u) -> dict:
        """The pinned setting at a point of the unit cube."""
        return self.pin({n: self.value(i, u[i]) for i, n in enumerate(self.names)})

    def units(self, setting: dict) -> np.ndarray:
        """The unit-cube point of a setting."""
        return np.array([self.unit(i, setting[n]) for i, n in enumerate(self.names)])

    def features(self, setting: dict) -> list[float]:
        """The GP's inputs: continuous dimensions on their prior's unit scale, categories one-hot."""
        out = [self.unit(i, setting[self.names[i]]) for i in self.continuous]
        for i in self.categorical:
            values = self.dims[i]["values"]
            out.extend(1.0 if setting[self.names[i]] == v else 0.0 for v in values)
        return out

    def key(self, setting: dict) -> tuple:
        """A hashable identity of a setting (values as a search would log them)."""
        return tuple(round(v, 12) if isinstance(v, float) else v for v in (setting[n] for n in self.names))


def derived_seed(*parts: int) -> int:
    """A 32-bit seed from integers (numpy's SeedSequence), so every decision has its own stream."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])
