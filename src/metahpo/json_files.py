"""Reading the JSON the stages hand each other: every failure is one line naming the file and key.

:func:`parse_json` is the one JSON parser of the stages' inputs (files, and the JSON cells of the trial
log). Whatever the text, it returns plain data or raises ``ValueError`` with a one-line reason: not JSON,
not UTF-8, a key given twice, nesting deeper than :data:`MAX_DEPTH`, an integer of more than
:data:`MAX_INT_DIGITS` digits (Python refuses 4,300; anything past a 64-bit count is not ours), and, unless
``finite=False``, ``NaN``, ``Infinity`` or a number too large for a float (named by its key).
:func:`load_json` reads a file with it and checks the structure the caller expects against a small
schema (:func:`schema_problem`), so a hand-edited manifest, ``best.json`` or ``evaluation.json`` is named
with its key, never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from metahpo.errors import InputError, first_line

MAX_DEPTH = 100
MAX_INT_DIGITS = 30


class RefusedJSON(ValueError):
    """Valid JSON whose content is refused: nested too deeply, or a number that is not finite."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) < len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {twice!r} given twice in one object")
    return data


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-')):,} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _scan(data, finite: bool) -> str:
    """Why ``data`` is refused (nested too deeply, or a non-finite number with ``finite``), else ``""``.

    Iterative, so that no depth of nesting can overflow the stack.
    """
    stack = [(data, "", 0)]
    while stack:
        value, where, level = stack.pop()
        if level > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), level + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", level + 1) for i, v in enumerate(value))
        elif finite and isinstance(value, float) and not math.isfinite(value):
            return f"{where or 'the value'}: {value} is not a finite number"
    return ""


def parse_json(text: str | bytes, finite: bool = True):
    """Plain data from JSON ``text``; ``ValueError`` with a one-line reason for anything else.

    With ``finite`` (the default), ``NaN``, ``Infinity`` and numbers that overflow a float are refused,
    naming their key.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_int)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    except ValueError as exc:  # json.JSONDecodeError is one; so are the hooks' refusals
        raise ValueError(first_line(exc)) from None
    problem = _scan(data, finite)
    if problem:
        raise RefusedJSON(problem)
    return data


# --- a small schema: what a caller expects of a JSON object ---------------------------------------

NUMBER = "a number"
TEXT = "a text"
INTEGER = "an integer"
BOOLEAN = "true or false"
OBJECT = "a JSON object"
LIST = "a list"
NULL = "null"
_CHECKS = {
    NUMBER: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    TEXT: lambda v: isinstance(v, str),
    INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool),
    BOOLEAN: lambda v: isinstance(v, bool),
    OBJECT: lambda v: isinstance(v, dict),
    LIST: lambda v: isinstance(v, list),
    NULL: lambda v: v is None,
}


@dataclass(frozen=True)
class Each:
    """An object of any keys whose every value matches ``spec``."""

    spec: object


@dataclass(frozen=True)
class ListOf:
    """A list whose every item matches ``spec``."""

    spec: object


@dataclass(frozen=True)
class Optional:
    """A key that may be absent; when present, its value matches ``spec``."""

    spec: object


def _shown(value) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | type(None)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def schema_problem(data, spec, where: str = "") -> str:
    """The first place where ``data`` does not match ``spec``, as ``"key.path: expected ..., got ..."``; else ``""``.

    ``spec`` is one of the kinds above (:data:`NUMBER`, :data:`TEXT`, ...), a tuple of them (any one),
    a dict ``{key: spec}`` (an object with at least those keys), :class:`Each`, :class:`ListOf` or
    :class:`Optional`.
    """
    name = f"{where}: " if where else ""
    if isinstance(spec, Optional):
        return schema_problem(data, spec.spec, where)
    if isinstance(spec, dict):
        if not isinstance(data, dict):
            return f"{name}expected a JSON object, got {_shown(data)}"
        for key, inner in spec.items():
            path = f"{where}.{key}" if where else key
            if key not in data:
                if isinstance(inner, Optional):
                    continue
                return f"{path}: missing"
            problem = schema_problem(data[key], inner, path)
            if problem:
                return problem
        return ""
    if isinstance(spec, Each | ListOf):
        if isinstance(spec, Each) and isinstance(data, dict):
            items = [(f"{where}.{k}" if where else k, v) for k, v in data.items()]
        elif isinstance(spec, ListOf) and isinstance(data, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(data)]
        else:
            return f"{name}expected {'a JSON object' if isinstance(spec, Each) else 'a list'}, got {_shown(data)}"
        return next((p for p in (schema_problem(v, spec.spec, path) for path, v in items) if p), "")
    kinds = spec if isinstance(spec, tuple) else (spec,)
    if any(_CHECKS[kind](data) for kind in kinds):
        return ""
    return f"{name}expected {' or '.join(kinds)}, got {_shown(data)}"


def load_json(path: Path, error: type[InputError], missing: str, schema=OBJECT, finite: bool = True):
    """The JSON data in ``path``, matching ``schema``; otherwise ``error`` naming the file (and key), with
    ``missing``: what to run."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: missing; {missing}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc}); {missing}") from None
    try:
        data = parse_json(raw, finite=finite)
    except RefusedJSON as exc:
        raise error(f"{path}: {exc}; {missing}") from None
    except ValueError as exc:
        raise error(f"{path}: not valid JSON ({exc}); {missing}") from None
    problem = schema_problem(data, schema)
    if problem:
        raise error(f"{path}: {problem}; {missing}")
    return data


def load_json_object(path: Path, error: type[InputError], missing: str, schema: dict | None = None) -> dict:
    """The JSON object in ``path`` with at least the keys and types of ``schema`` (see :func:`schema_problem`)."""
    return load_json(path, error, missing, OBJECT if schema is None else schema)
