"""Reading a validated search space: the values a dimension spans, the algorithms it tries, and what lies outside it.

These decide trials (the cost cap, the memory guard, the points of a resumed search), so they live apart from
:mod:`metahpo.params`, whose checks only accept or refuse params; the search fingerprint hashes this file.
"""

from __future__ import annotations


def largest_value(dim: dict):
    """The largest value a (numeric) search dimension can take."""
    return max(dim["values"]) if dim["type"] == "categorical" else dim["high"]


def smallest_value(dim: dict):
    """The smallest value a (numeric) search dimension can take."""
    return min(dim["values"]) if dim["type"] == "categorical" else dim["low"]


def space_algorithms(space: dict, fixed: str) -> list[str]:
    """The algorithms a search over ``space`` tries: its ``algorithm`` values, else the ``fixed`` one."""
    dim = space.get("algorithm")
    return list(dim["values"]) if dim is not None else [fixed]


def outside_space(values: dict, space: dict) -> list[tuple[str, str]]:
    """``(name, why)`` for each value in ``values`` that its dimension of ``space`` does not contain."""
    outside = []
    for name, dim in space.items():
        value = values[name]
        if dim["type"] == "categorical":
            inside, where = value in dim["values"], f"not one of {dim['values']}"
        else:
            inside, where = dim["low"] <= value <= dim["high"], f"outside [{dim['low']}, {dim['high']}]"
        if not inside:
            outside.append((name, where))
    return outside
