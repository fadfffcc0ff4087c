"""The value types of params.yaml: pydantic types with their bounds in ``Field`` and today's one-line messages.

Each type fails with one error of type ``expected`` whose message is the whole line after the key path
(``expected an integer >= 1 and <= 50, got 0``). Names owned by a domain package (the algorithms, the search
methods) are a :func:`Name`: the package registers them (:func:`register_names`), so the schema in the core
names the vocabulary without importing the package that fills it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AllowInfNan, Field, GetJsonSchemaHandler, Strict, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError, core_schema

# Registered by the domain packages: vocabulary name -> allowed values, and rules over the whole Params.
VOCABULARY: dict[str, tuple[str, ...]] = {}
RULES: list[Callable] = []


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


def _expect(want: str) -> WrapValidator:
    """Replace pydantic's own error by ``expected <want>, got <value>``; this type's own checks' errors pass."""

    def wrap(value, handler):
        try:
            return handler(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            own = first["type"] == "expected" and not first["loc"]  # raised by this type's own check
            raise problem(first["msg"] if own else f"expected {want}, got {value!r}") from None

    return WrapValidator(wrap)


def _bounds(*parts: tuple[str, Any]) -> str:
    return " and ".join(f"{op} {value}" for op, value in parts if value is not None)


def _replace_schema(schema: dict) -> Callable[[dict], None]:
    """Give a union of int and float the JSON schema of one number (pydantic writes its bounds as gt/le there)."""

    def replace(generated: dict) -> None:
        generated.clear()
        generated.update(schema)

    return replace


_INT = Annotated[int, Strict()]
_FLOAT = Annotated[float, Strict(), AllowInfNan(False)]


def Int(ge: int | None = None, le: int | None = None):  # noqa: N802 (a type)
    """An integer in ``[ge, le]`` (never a bool or a float)."""
    return Annotated[_INT, Field(ge=ge, le=le), _expect(f"an integer {_bounds(('>=', ge), ('<=', le))}".strip())]


def Number(gt: float | None = None, le: float | None = None, want: str | None = None):  # noqa: N802
    """A finite number ``> gt`` and ``<= le``; an integer stays an integer."""
    schema = {"type": "number"} | ({"exclusiveMinimum": gt} if gt is not None else {})
    schema |= {"maximum": le} if le is not None else {}
    return Annotated[
        _INT | _FLOAT,
        Field(gt=gt, le=le, json_schema_extra=_replace_schema(schema)),
        _expect(want or f"a number {_bounds(('>', gt), ('<=', le))}".strip()),
    ]


Fraction = Annotated[
    _INT | _FLOAT,
    Field(ge=0, le=1, json_schema_extra=_replace_schema({"type": "number", "minimum": 0, "maximum": 1})),
    _expect("a number from 0 to 1"),
]
Bool = Annotated[bool, Strict(), _expect("true or false")]


def Choice(*allowed: str | int):  # noqa: N802
    """One of ``allowed``, fixed in the core."""
    return Annotated[Literal[allowed], _expect(f"one of {', '.join(map(str, allowed))}")]


class _Name:
    """One of the values registered for a vocabulary; a non-empty name while none are registered."""

    def __init__(self, vocabulary: str):
        self.vocabulary = vocabulary

    def check(self, value):
        allowed = VOCABULARY.get(self.vocabulary)
        if allowed is None and isinstance(value, str) and value:
            return value
        if allowed is None or value not in allowed:
            raise problem(f"expected one of {', '.join(allowed or ('a name',))}, got {value!r}")
        return value

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(self, schema, handler: GetJsonSchemaHandler) -> dict:
        allowed = VOCABULARY.get(self.vocabulary)
        return {"type": "string", "enum": list(allowed)} if allowed else {"type": "string"}


def Name(vocabulary: str):  # noqa: N802
    """A value of a registered vocabulary (see :func:`register_names`)."""
    return Annotated[str, _Name(vocabulary)]


# Task values are stored as float32 and squared in the MSE: magnitudes are kept far from its overflow.
TASK_RANGE_LIMIT = 1e6


def _interval(min_low: float | None):
    def check(v: list) -> list:
        if v[0] >= v[1]:
            raise problem(f"expected [low, high] with low < high, got {v!r}")
        if min_low is not None and v[0] < min_low:
            raise problem(f"expected low >= {min_low}, got {v!r}")
        if max(abs(v[0]), abs(v[1])) > TASK_RANGE_LIMIT:
            raise problem(
                f"expected values within +-{TASK_RANGE_LIMIT:g} (tasks are float32 and errors are squared), got {v!r}"
            )
        return v

    return check


def Interval(min_low: float | None = None):  # noqa: N802
    """A ``[low, high]`` pair of numbers with ``low < high`` (and ``low >= min_low``), within +-1e6."""
    return Annotated[
        list[_INT | _FLOAT],
        Field(
            min_length=2,
            max_length=2,
            json_schema_extra=_replace_schema({"type": "array", "items": {"type": "number"}}),
        ),
        AfterValidator(_interval(min_low)),
        _expect("[low, high] with low < high"),
    ]


def _distinct(v: list) -> list:
    if len(set(v)) != len(v):
        raise ValueError("duplicates")
    return v


def DistinctList(item, want: str):  # noqa: N802
    """A non-empty list of distinct ``item`` values."""
    return Annotated[list[item], Field(min_length=1, json_schema_extra={"uniqueItems": True}),
                     AfterValidator(_distinct), _expect(want)]  # fmt: skip


def _rates(v: list) -> list:
    if not 0 < v[0] < v[1]:
        raise ValueError("order")
    return v


RateRange = Annotated[
    list[Number(gt=0, le=100)],
    Field(min_length=2, max_length=2),
    AfterValidator(_rates),
    _expect("[low, high] with 0 < low < high <= 100"),
]


def _text(v: str) -> str:
    if not v.strip():
        raise ValueError("empty")
    return v


Text = Annotated[str, Strict(), AfterValidator(_text), _expect("a non-empty path")]


def _address(v):
    if v is not None and (not isinstance(v, str) or ":" not in v or " " in v):
        raise problem(f"expected null or a scheduler address like tcp://host:8786, got {v!r}")
    return v


Address = Annotated[str | None, WrapValidator(lambda v, handler: _address(v))]
