"""Problems as one line each, naming the key path: from a pydantic ``ValidationError``, or from a check.

A check is ``check(value, path) -> list of problems``; :class:`Rule` makes one of a schema type, so that
other files (a learner's ``config.json``, a search result) are checked with the same bounds and messages.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import is_typeddict

from metahpo.params.types import Choice, Int

Check = Callable[[object, str], list[str]]


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _fields(tp) -> dict | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: info.annotation for name, info in tp.model_fields.items()}
    if is_typeddict(tp):
        return typing.get_type_hints(tp, include_extras=True)
    return None


def _keys_at(root, loc: tuple) -> list[str]:
    tp = root
    for part in loc:
        fields = _fields(tp) or {}
        tp = fields.get(part)
    return list(_fields(tp) or {})


def error_lines(exc: ValidationError, root=None, prefix: str = "") -> list[str]:
    """Each error of ``exc`` as one line naming its key path (``prefix`` + the error's location)."""
    lines = []
    for err in exc.errors():
        loc = (prefix,) + tuple(err["loc"]) if prefix else tuple(err["loc"])
        path, kind = _path(loc), err["type"]
        if kind == "problems":
            lines.extend(err["ctx"]["lines"])
        elif kind == "missing":
            lines.append(f"{path}: missing")
        elif kind == "extra_forbidden" and root is not None:
            lines.append(f"{path}: unknown key (expected one of {', '.join(_keys_at(root, err['loc'][:-1]))})")
        elif kind in ("model_type", "dict_type") and root is not None:
            keys = ", ".join(_keys_at(root, err["loc"]))
            lines.append(f"{path or 'the file'}: expected a mapping with keys {keys}, got {err['input']!r}")
        else:
            lines.append(f"{path}: {err['msg']}")
    return lines


class Rule:
    """The check of one schema type: ``Rule(Int(1, 50))(value, "meta.inner_steps")`` lists its problems."""

    def __init__(self, annotation, kind: str = "integer"):
        self.annotation, self.kind = annotation, kind  # kind: the search dimension it takes (real, integer, ...)
        self._adapter = TypeAdapter(annotation)

    def __call__(self, value, path: str) -> list[str]:
        try:
            self._adapter.validate_python(value)
        except ValidationError as exc:
            return error_lines(exc, prefix=path)
        return []


def section(fields: dict[str, Check]) -> Check:
    """A mapping with exactly the keys of ``fields``, each checked by its own rule."""

    def check(v, path):
        if not isinstance(v, dict):
            return [f"{path or 'the file'}: expected a mapping with keys {', '.join(fields)}, got {v!r}"]
        prefix = f"{path}." if path else ""
        problems = [f"{prefix}{k}: unknown key (expected one of {', '.join(fields)})" for k in v if k not in fields]
        for key, rule in fields.items():
            problems.extend(rule(v[key], f"{prefix}{key}") if key in v else [f"{prefix}{key}: missing"])
        return problems

    return check


def choice(*allowed: str) -> Check:
    """One of ``allowed``."""
    return Rule(Choice(*allowed), "categorical")


def integer(low: int | None = None, high: int | None = None) -> Check:
    """An integer in ``[low, high]``."""
    return Rule(Int(low, high))
