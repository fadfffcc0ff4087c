"""The value types of params.yaml, and pydantic's errors as one line each naming the key path.

A type fails with one ``expected`` error: the line after the key path (``expected an integer >= 1 and <= 50,
got 0``). A :func:`Name` reads the values that a domain package registers (:func:`register_names`).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AllowInfNan, Field, PlainValidator, Strict, TypeAdapter, ValidationError, WithJsonSchema
from pydantic import WrapValidator as _Wrap
from pydantic_core import PydanticCustomError
from typing_extensions import is_typeddict

VOCABULARY: dict[str, tuple[str, ...]] = {}  # registered by the domain packages: vocabulary -> allowed values
RULES: list[Callable] = []  # registered likewise: rules over the whole Params
TASK_RANGE_LIMIT = 1e6  # task values are float32 and squared in the MSE: kept far from its overflow


def register_names(**names: tuple[str, ...]) -> None:
    """Declare the allowed values of each vocabulary (``algorithm=ALGORITHMS``) that a :func:`Name` field reads."""
    VOCABULARY.update({key: tuple(values) for key, values in names.items()})


def register_rule(rule: Callable) -> Callable:
    """Add ``rule(params) -> list of problems`` to the checks that span sections (idempotent)."""
    if rule not in RULES:
        RULES.append(rule)
    return rule


def problem(message: str) -> PydanticCustomError:
    """The error of a value: ``message`` is the line after its key path."""
    return PydanticCustomError("expected", "{message}", {"message": message})


def problems(lines: list[str]) -> PydanticCustomError:
    """Several errors at once, each a whole line with its key path (rules over a section or the file)."""
    return PydanticCustomError("problems", "{lines}", {"lines": lines})


def _expect(want: str, holds: Callable = lambda v: True) -> _Wrap:
    """Fail with ``expected <want>, got <value>`` where pydantic fails or ``holds(value)`` does not.

    An ``expected`` error of the value itself (an inner condition's) stands, so conditions chain in order.
    """

    def wrap(value, handler):
        try:
            out = handler(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            own = first["type"] == "expected" and not first["loc"]
            raise problem(first["msg"] if own else f"expected {want}, got {value!r}") from None
        if not holds(out):
            raise problem(f"expected {want}, got {value!r}")
        return out

    return _Wrap(wrap)


def _fields(tp) -> dict:
    """The keys of a section (a model or a TypedDict) and their types; empty for a value."""
    if is_typeddict(tp):
        return typing.get_type_hints(tp, include_extras=True)
    return {name: info.annotation for name, info in getattr(tp, "model_fields", {}).items()}


def _keys_at(root, loc: tuple) -> str:
    for part in loc:
        root = _fields(root).get(part)
    return ", ".join(_fields(root))


def error_lines(exc: ValidationError, root, prefix: str = "") -> list[str]:
    """Each error of ``exc`` (validating ``root``) as one line naming its key path, ``prefix`` + its location."""
    lines = []
    for err in exc.errors():
        loc, kind = err["loc"], err["type"]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        path = prefix + path if prefix else path.removeprefix(".")
        if kind == "problems":
            lines.extend(err["ctx"]["lines"])
        elif kind == "missing":
            lines.append(f"{path}: missing")
        elif kind == "extra_forbidden":
            lines.append(f"{path}: unknown key (expected one of {_keys_at(root, loc[:-1])})")
        elif kind in ("model_type", "dict_type"):
            keys = _keys_at(root, loc)
            lines.append(f"{path or 'the file'}: expected a mapping with keys {keys}, got {err['input']!r}")
        else:
            lines.append(f"{path}: {err['msg']}")
    return lines


class Rule:
    """The check of one value type: ``Rule(Int(1, 50))(value, "meta.inner_steps")`` lists its problems."""

    def __init__(self, annotation, kind: str = "integer"):
        self.kind, self._adapter = kind, TypeAdapter(annotation)  # kind: the search dimension it takes

    def __call__(self, value, path: str) -> list[str]:
        try:
            self._adapter.validate_python(value)
        except ValidationError as exc:
            return error_lines(exc, None, path)
        return []


def section(fields: dict[str, Callable]) -> Callable:
    """The check of a mapping with exactly the keys of ``fields``, each value checked by its own rule."""

    def check(v, path: str) -> list[str]:
        if not isinstance(v, dict):
            return [f"{path or 'the file'}: expected a mapping with keys {', '.join(fields)}, got {v!r}"]
        at = f"{path}." if path else ""
        found = [f"{at}{k}: unknown key (expected one of {', '.join(fields)})" for k in v if k not in fields]
        for key, rule in fields.items():
            found += rule(v[key], at + key) if key in v else [f"{at}{key}: missing"]
        return found

    return check


_INT = Annotated[int, Strict()]
_NUMBER = _INT | Annotated[float, Strict(), AllowInfNan(False)]  # an integer stays an integer (9 is not 9.0)


def Int(ge: int, le: int):  # noqa: N802 (a type)
    """An integer in ``[ge, le]`` (never a bool or a float)."""
    return Annotated[_INT, Field(ge=ge, le=le), _expect(f"an integer >= {ge} and <= {le}")]


def Number(gt: float, le: float):  # noqa: N802
    """A finite number ``> gt`` and ``<= le``."""
    schema = WithJsonSchema({"type": "number", "exclusiveMinimum": gt, "maximum": le})
    return Annotated[_NUMBER, Field(gt=gt, le=le), schema, _expect(f"a number > {gt} and <= {le}")]


def Choice(*allowed: str | int):  # noqa: N802
    """One of ``allowed``, fixed in the core."""
    return Annotated[Literal[allowed], _expect(f"one of {', '.join(map(str, allowed))}")]


def Name(vocabulary: str):  # noqa: N802
    """One of the values registered for ``vocabulary``; any non-empty name while none are registered."""

    def check(value):
        allowed = VOCABULARY.get(vocabulary)
        if (value not in allowed) if allowed else not (isinstance(value, str) and value):
            raise problem(f"expected one of {', '.join(allowed or ('a name',))}, got {value!r}")
        return value

    def names(schema: dict) -> None:  # the JSON schema lists them once registered
        schema.update({"enum": list(VOCABULARY[vocabulary])} if vocabulary in VOCABULARY else {})

    return Annotated[str, PlainValidator(check, json_schema_input_type=str), Field(json_schema_extra=names)]


def Interval(min_low: float | None = None):  # noqa: N802
    """A ``[low, high]`` pair of numbers with ``low < high`` (and ``low >= min_low``), within +-1e6."""
    return Annotated[
        list[_NUMBER], Field(min_length=2, max_length=2), _expect("[low, high] with low < high", lambda v: v[0] < v[1]),
        _expect(f"low >= {min_low}", lambda v: min_low is None or v[0] >= min_low),
        _expect(f"values within +-{TASK_RANGE_LIMIT:g} (tasks are float32 and errors are squared)",
                lambda v: max(abs(v[0]), abs(v[1])) <= TASK_RANGE_LIMIT),
        WithJsonSchema({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}),
    ]  # fmt: skip


def DistinctList(item, want: str):  # noqa: N802
    """A non-empty list of distinct ``item`` values."""
    unique = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    return Annotated[list[item], unique, _expect(want, lambda v: len(set(v)) == len(v))]


Fraction = Annotated[_NUMBER, Field(ge=0, le=1), WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
                     _expect("a number from 0 to 1")]  # fmt: skip
Bool = Annotated[bool, Strict(), _expect("true or false")]
RateRange = Annotated[list[Number(0, 100)], Field(min_length=2, max_length=2),
                      _expect("[low, high] with 0 < low < high <= 100", lambda v: v[0] < v[1])]  # fmt: skip
Text = Annotated[str, Strict(), _expect("a non-empty path", str.strip)]
Address = Annotated[str, Strict(), _expect("null or a scheduler address like tcp://host:8786",
                                           lambda v: ":" in v and " " not in v)] | None  # fmt: skip
