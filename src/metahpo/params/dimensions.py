"""The tunable meta-hyperparameters and ``search.space``: what each may be, as a fixed value and as a dimension."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated

from pydantic import WithJsonSchema, WrapValidator

from metahpo.params.checks import Rule, section
from metahpo.params.types import Choice, Fraction, Int, Name, Number, problems

PRIORS = ("uniform", "log-uniform")  # of a real or integer dimension
# name: (section, type, the dimension it takes besides categorical). The order is that of a learner's setting.
_TUNABLE = {
    "algorithm": ("meta", Name("algorithm"), "categorical"),
    "inner_lr": ("meta", Number(gt=0, le=100), "real"),
    "inner_steps": ("meta", Int(1, 50), "integer"),
    "outer_lr": ("meta", Number(gt=0, le=1), "real"),
    "meta_batch_size": ("meta", Int(1, 10_000), "integer"),
    "query": ("meta", Int(1, 1000), "integer"),
    "outer_schedule": ("meta", Name("outer_schedule"), "categorical"),
    "hidden": ("model", Int(1, 4096), "integer"),
    "layers": ("model", Int(1, 16), "integer"),
    "representation": ("model", Int(1, 4096), "integer"),
    "rule_hidden": ("meta", Int(1, 1024), "integer"),
    "inner_rates": ("meta", Name("inner_rates"), "categorical"),
    "multi_step_loss": ("meta", Fraction, "real"),
    "first_order_fraction": ("meta", Fraction, "real"),
    "extra_steps": ("meta", Name("extra_steps"), "categorical"),
}
# The types by name, for the sections (``hidden: T.hidden``).
T = SimpleNamespace(**{name: tp for name, (_, tp, _) in _TUNABLE.items()})
# What each tunable meta-hyperparameter may be, shared by its fixed value and its search dimension.
TUNABLE: dict[str, tuple[str, Rule]] = {name: (group, Rule(tp, kind)) for name, (group, tp, kind) in _TUNABLE.items()}


def _checked_below(v, path) -> list[str]:
    return []


def dimension_problems(v, path: str) -> list[str]:
    """One search-space dimension: ``real`` / ``integer`` (low, high, prior) or ``categorical`` (values)."""
    name = path.rsplit(".", 1)[-1]
    if name not in TUNABLE:
        return [f"{path}: unknown meta-hyperparameter (expected one of {', '.join(TUNABLE)})"]
    rule = TUNABLE[name][1]
    kind = v.get("type") if isinstance(v, dict) else None
    if kind not in ("real", "integer", "categorical"):
        return [f"{path}.type: expected one of real, integer, categorical, got {kind if isinstance(v, dict) else v!r}"]
    if kind == "categorical":
        found = section({"type": Rule(Choice("categorical")), "values": _checked_below})(v, path)
        values = v.get("values")
        if not isinstance(values, list) or not values:
            return found + [f"{path}.values: expected a non-empty list, got {values!r}"]
        if len(set(map(repr, values))) != len(values):
            found.append(f"{path}.values: contains duplicates: {values!r}")
        return found + [p for i, item in enumerate(values) for p in rule(item, f"{path}.values[{i}]")]
    if kind != rule.kind:
        return [f"{path}.type: {name} takes {rule.kind} or categorical values, not {kind}"]
    found = section({"type": Rule(Choice(kind)), "low": rule, "high": rule, "prior": Rule(Choice(*PRIORS))})(v, path)
    if not found and v["low"] >= v["high"]:
        found.append(f"{path}: expected low < high, got low={v['low']!r}, high={v['high']!r}")
    if not found and v["prior"] == "log-uniform" and v["low"] <= 0:
        found.append(f"{path}.low: a log-uniform prior needs low > 0, got {v['low']!r}")
    return found


def _space(v, handler):
    if not isinstance(v, dict) or not v:
        raise problems([f"search.space: expected a non-empty mapping of meta-hyperparameter to dimension, got {v!r}"])
    found = [p for name, dim in v.items() for p in dimension_problems(dim, f"search.space.{name}")]
    if found:
        raise problems(found)
    return v


_NUMERIC = {"type": {"enum": ["real", "integer"]}, "low": {"type": "number"}, "high": {"type": "number"},
            "prior": {"enum": list(PRIORS)}}  # fmt: skip
_CATEGORICAL = {"type": {"const": "categorical"}, "values": {"type": "array", "minItems": 1}}
# For editors: a dimension per tunable name.
_SPACE_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"enum": list(TUNABLE)},
    "additionalProperties": {
        "oneOf": [
            {"type": "object", "properties": p, "required": list(p), "additionalProperties": False}
            for p in (_NUMERIC, _CATEGORICAL)
        ]
    },
}
Space = Annotated[dict[str, dict], WrapValidator(_space), WithJsonSchema(_SPACE_SCHEMA)]
