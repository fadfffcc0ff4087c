"""The value types of params.yaml: pydantic types with their bounds in ``Field`` and today's one-line messages.

Each type fails with one error of type ``expected`` whose message is the whole line after the key path
(``expected an integer >= 1 and <= 50, got 0``). Names owned by a domain package (the algorithms, the search
methods) are a :func:`Name`: the package registers them (:func:`register_names`), so the schema in the core
names the vocabulary without importing the package that fills it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AllowInfNan, Field, Strict, ValidationError, WithJsonSchema, WrapValidator
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


def _that(holds: Callable[[Any], bool]) -> AfterValidator:
    """A condition the value must meet (its message is the type's ``expected ...``)."""

    def check(value):
        if not holds(value):
            raise ValueError("condition")
        return value

    return AfterValidator(check)


_INT = Annotated[int, Strict()]
_FLOAT = Annotated[float, Strict(), AllowInfNan(False)]
_NUMBER = _INT | _FLOAT  # an integer stays an integer (9 is not read as 9.0)


def Int(ge: int | None = None, le: int | None = None):  # noqa: N802 (a type)
    """An integer in ``[ge, le]`` (never a bool or a float)."""
    return Annotated[_INT, Field(ge=ge, le=le), _expect(f"an integer {_bounds(('>=', ge), ('<=', le))}".strip())]


def Number(gt: float | None = None, le: float | None = None):  # noqa: N802
    """A finite number ``> gt`` and ``<= le``."""
    schema = {"type": "number"} | ({"exclusiveMinimum": gt} if gt is not None else {})
    return Annotated[_NUMBER, Field(gt=gt, le=le), WithJsonSchema(schema | ({"maximum": le} if le else {})),
                     _expect(f"a number {_bounds(('>', gt), ('<=', le))}".strip())]  # fmt: skip


Fraction = Annotated[_NUMBER, Field(ge=0, le=1), WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1}),
                     _expect("a number from 0 to 1")]  # fmt: skip
Bool = Annotated[bool, Strict(), _expect("true or false")]


def Choice(*allowed: str | int):  # noqa: N802
    """One of ``allowed``, fixed in the core."""
    return Annotated[Literal[allowed], _expect(f"one of {', '.join(map(str, allowed))}")]


class _Name:
    """One of the values registered for a vocabulary; any non-empty name while none are registered."""

    def __init__(self, vocabulary: str):
        self.vocabulary = vocabulary

    def check(self, value):
        allowed = VOCABULARY.get(self.vocabulary)
        if (value not in allowed) if allowed else not (isinstance(value, str) and value):
            raise problem(f"expected one of {', '.join(allowed or ('a name',))}, got {value!r}")
        return value

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(self, schema, handler) -> dict:
        return {"type": "string"} | (
            {"enum": list(VOCABULARY[self.vocabulary])} if self.vocabulary in VOCABULARY else {}
        )


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
            raise problem(f"expected values within +-{TASK_RANGE_LIMIT:g} (tasks are float32 and errors are squared), "
                          f"got {v!r}")  # fmt: skip
        return v

    return check


def Interval(min_low: float | None = None):  # noqa: N802
    """A ``[low, high]`` pair of numbers with ``low < high`` (and ``low >= min_low``), within +-1e6."""
    return Annotated[list[_NUMBER], Field(min_length=2, max_length=2), AfterValidator(_interval(min_low)),
                     WithJsonSchema({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}),
                     _expect("[low, high] with low < high")]  # fmt: skip


def DistinctList(item, want: str):  # noqa: N802
    """A non-empty list of distinct ``item`` values."""
    return Annotated[list[item], Field(min_length=1, json_schema_extra={"uniqueItems": True}),
                     _that(lambda v: len(set(v)) == len(v)), _expect(want)]  # fmt: skip


RateRange = Annotated[list[Number(gt=0, le=100)], Field(min_length=2, max_length=2), _that(lambda v: v[0] < v[1]),
                      _expect("[low, high] with 0 < low < high <= 100")]  # fmt: skip
Text = Annotated[str, Strict(), _that(str.strip), _expect("a non-empty path")]
Address = Annotated[Annotated[str, Strict(), _that(lambda v: ":" in v and " " not in v)] | None,
                    _expect("null or a scheduler address like tcp://host:8786")]  # fmt: skip
