"""All of params.yaml as frozen models (unknown keys refused, bounds in the types), and the rules across sections."""

import math
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Self, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, WithJsonSchema, WrapValidator, model_validator
from typing_extensions import TypedDict

from metahpo.errors import ConfigError
from metahpo.params import types as t
from metahpo.params.types import Choice, Int, Name, Number, Rule, problem, problems, section
from metahpo.space import largest_value, outside_space
from metahpo.task_names import CLASSIFICATION_FAMILIES, DIGITS_SIDE, FAMILIES, SPLIT_BY

PRIORS = ("uniform", "log-uniform")  # of a real or integer dimension
RAW_DATA = "data/raw"
MAX_GRID_POINTS = 100_000  # the grid search lists every point first; a larger grid would never be run through
TLS_KEYS = ("ca_file", "cert", "key")


def _pem(f) -> str | None:
    if not (isinstance(f, str) and f.strip()):
        return f"expected the path of a PEM file, got {f!r}"
    return None if Path(f).is_file() else f"{f} is not a file"


def _tls(v, handler):
    if v is not None and (not isinstance(v, dict) or set(v) != set(TLS_KEYS)):
        raise problem(f"expected null or a mapping with keys {', '.join(TLS_KEYS)}, got {v!r}")
    if found := [f"search.tls.{key}: {why}" for key in TLS_KEYS if v is not None and (why := _pem(v[key]))]:
        raise problems(found)
    return v


STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Section(BaseModel):
    """A section of params.yaml: frozen, every key required, no other key."""

    model_config = STRICT


class OodParams(Section):
    """Amplitude and phase ranges of the out-of-distribution sinusoid tasks."""

    amplitude: t.Interval(min_low=0)
    phase: t.Interval()


class Splits(TypedDict):
    """Tasks (classification: stored episodes) per split."""

    __pydantic_config__ = STRICT
    meta_train: Int(1, 10_000_000)
    meta_val: Int(1, 10_000_000)
    meta_test: Int(1, 10_000_000)
    meta_ood: Int(1, 10_000_000)


class ClassSplits(TypedDict):
    """Fractions of the source classes in each split."""

    __pydantic_config__ = STRICT
    meta_train: Number(0, 1)
    meta_val: Number(0, 1)
    meta_test: Number(0, 1)


class TaskParams(Section):
    """The ``tasks`` section: which task family, and how its held-out tasks are stored."""

    family: Choice(*FAMILIES)
    shots: Int(1, 1000)
    query: Int(1, 1000)
    amplitude: t.Interval(min_low=0)
    phase: t.Interval()
    x_range: t.Interval()
    eval_shots: t.DistinctList(Int(1, 1000), "a non-empty list of distinct integers in [1, 1000]")
    grid_points: Int(2, 10_000)
    train_points: Int(2, 10_000)
    ood: OodParams
    splits: Splits
    ways: Int(2, 1000)
    class_splits: ClassSplits
    rotations: t.DistinctList(Choice(0, 90, 180, 270), "a non-empty list of distinct rotations from 0, 90, 180, 270")
    split_by: Choice(*SPLIT_BY)
    image_size: Int(4, 512) | None
    root: t.Text | None

    @property
    def classification(self) -> bool:
        """Whether the family is N-way classification (else sinusoid regression)."""
        return self.family in CLASSIFICATION_FAMILIES

    @property
    def image_side(self) -> int:
        """Side of the square images of a classification family (digits keep 8 unless resized)."""
        return self.image_size or DIGITS_SIDE

    @property
    def support_pool(self) -> int:
        """Support points (images per class) stored per held-out task: enough for every K evaluated."""
        return max(self.shots, *self.eval_shots)


class ModelParams(Section):
    """The ``model`` section: the untuned architecture."""

    arch: Name("arch")
    hidden: Int(1, 4096)
    layers: Int(1, 16)
    representation: Int(1, 4096)


class MetaParams(Section):
    """The ``meta`` section: the untuned meta-learner and outer loop (the MAML paper's defaults)."""

    algorithm: Name("algorithm")
    inner_lr: Number(0, 100)
    inner_steps: Int(1, 50)
    outer_lr: Number(0, 1)
    meta_batch_size: Int(1, 10_000)
    query: Int(1, 1000)
    outer_schedule: Name("outer_schedule")
    rule_hidden: Int(1, 1024)
    inner_rates: Name("inner_rates")
    multi_step_loss: t.Fraction
    first_order_fraction: t.Fraction
    extra_steps: Name("extra_steps")


def _tunable(name: str) -> tuple[str, Rule]:
    group, cls = ("model", ModelParams) if name in ModelParams.model_fields else ("meta", MetaParams)
    tp = cls.__annotations__[name]
    return group, Rule(tp, {int: "integer", str: "categorical"}.get(get_args(tp)[0], "real"))  # Int, Name, a number


# The tunable meta-hyperparameters, in the order of a learner's setting: (section, check).
TUNABLE: dict[str, tuple[str, Rule]] = {name: _tunable(name) for name in (
    "algorithm", "inner_lr", "inner_steps", "outer_lr", "meta_batch_size", "query", "outer_schedule", "hidden",
    "layers", "representation", "rule_hidden", "inner_rates", "multi_step_loss", "first_order_fraction", "extra_steps",
)}  # fmt: skip
_ANY, _PRIOR = Rule(Any), Rule(Choice(*PRIORS))


def _dimension(name: str, v, path: str) -> list[str]:
    """One search dimension: ``real`` / ``integer`` (low, high, prior) or ``categorical`` (values)."""
    if name not in TUNABLE:
        return [f"{path}: unknown meta-hyperparameter (expected one of {', '.join(TUNABLE)})"]
    kind, rule = v.get("type") if isinstance(v, dict) else None, TUNABLE[name][1]
    if kind not in ("real", "integer", "categorical"):
        return [f"{path}.type: expected one of real, integer, categorical, got {kind if isinstance(v, dict) else v!r}"]
    if kind not in ("categorical", rule.kind):
        return [f"{path}.type: {name} takes {rule.kind} or categorical values, not {kind}"]
    if kind != "categorical":
        found = section({"type": _ANY, "low": rule, "high": rule, "prior": _PRIOR})(v, path)
        if not found and v["low"] >= v["high"]:
            found.append(f"{path}: expected low < high, got low={v['low']!r}, high={v['high']!r}")
        elif not found and v["prior"] == "log-uniform" and v["low"] <= 0:
            found.append(f"{path}.low: a log-uniform prior needs low > 0, got {v['low']!r}")
        return found
    found, values = section({"type": _ANY, "values": _ANY})(v, path), v.get("values")
    if not isinstance(values, list) or not values:
        return [*found, f"{path}.values: expected a non-empty list, got {values!r}"]
    if len(set(map(repr, values))) != len(values):
        found.append(f"{path}.values: contains duplicates: {values!r}")
    return found + [p for i, item in enumerate(values) for p in rule(item, f"{path}.values[{i}]")]


def _space(v, handler):
    if not isinstance(v, dict) or not v:
        raise problem(f"expected a non-empty mapping of meta-hyperparameter to dimension, got {v!r}")
    if found := [p for name, dim in v.items() for p in _dimension(name, dim, f"search.space.{name}")]:
        raise problems(found)
    return v


_NUMERIC = {"type": {"enum": ["real", "integer"]}, "low": {"type": "number"}, "high": {"type": "number"},
            "prior": {"enum": list(PRIORS)}}  # fmt: skip
_CATEGORICAL = {"type": {"const": "categorical"}, "values": {"type": "array", "minItems": 1}}
_DIMENSION = [{"type": "object", "properties": p, "required": list(p), "additionalProperties": False}
              for p in (_NUMERIC, _CATEGORICAL)]  # fmt: skip
_SPACE_SCHEMA = {"type": "object", "minProperties": 1, "propertyNames": {"enum": list(TUNABLE)},
                 "additionalProperties": {"oneOf": _DIMENSION}}  # fmt: skip


class MedianStop(Section):
    """``search.median_stop``: early stopping of trials above the median of earlier ones."""

    enabled: t.Bool
    checkpoints: Int(2, 100)
    min_trials: Int(1, 10_000)


class TlsFiles(TypedDict):
    """PEM files of the CA, and of this client's certificate and key."""

    ca_file: str
    cert: str
    key: str


class SearchParams(Section):
    """The ``search`` section. ``space`` maps a meta-hyperparameter to its validated dimension."""

    method: Name("method")
    acq_func: Name("acq_func")
    n_calls: Int(1, 100_000)
    n_initial_points: Int(1, 100_000)
    iterations: Int(1, 10_000_000)
    objective_steps: Int(0, 100)
    stable_steps: Int(0, 100)
    objective: Name("objective")
    repeats: Int(1, 100)
    class_folds: Int(1, 100)
    start_from_default: t.Bool
    workers: Int(1, 1024)
    executor: Name("executor")
    address: t.Address
    tls: Annotated[TlsFiles | None, WrapValidator(_tls)]
    retries: Int(0, 10)
    grid_points: Int(2, 100)
    median_stop: MedianStop
    fidelity: Name("fidelity")
    min_iterations: Int(1, 10_000_000)
    eta: Int(2, 100)
    fidelity_unit: Name("fidelity_unit")
    max_cost: Number(0, 1e6) | None
    space: Annotated[dict[str, dict], WrapValidator(_space), WithJsonSchema(_SPACE_SCHEMA)]


class FinetuneParams(Section):
    """``train.finetune``: the grid over which the pretrained baseline's SGD rate and steps are chosen."""

    lr: t.RateRange
    lr_points: Int(1, 1000)
    max_steps: Int(1, 50)  # as meta.inner_steps
    eta: Int(1, 100)


class TrainParams(Section):
    """The ``train`` section: the final training of every learner."""

    iterations: Int(1, 100_000_000)
    compute: Number(0, 1e6) | None
    log_every: Int(1, 10_000_000)
    patience: Int(0, 1_000_000)
    workers: Int(1, 64)
    compare_kinds: t.Bool
    finetune: FinetuneParams


class EvaluateParams(Section):
    """The ``evaluate`` section: the held-out protocol."""

    max_steps: Int(0, 100)
    task_chunk: Int(1, 1_000_000)
    workers: Int(1, 64)


class Params(Section):
    """All of ``params.yaml``, validated."""

    seed: Int(0, 2**32 - 1)
    device: Choice("auto", "cpu", "cuda")
    threads: Int(1, 256)
    tasks: TaskParams
    model: ModelParams
    meta: MetaParams
    search: SearchParams
    train: TrainParams
    evaluate: EvaluateParams

    @model_validator(mode="after")
    def _across_sections(self) -> Self:
        if found := [p for rule in (_sizes, _search, _family, *t.RULES) for p in rule(self)]:
            raise problems(found)
        return self

    @classmethod
    def from_dict(cls, raw, source: str = "") -> Self:
        """Read validated params; raise :class:`ConfigError` listing every problem (each prefixed by ``source``)."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            found = t.error_lines(exc, cls)
        raise ConfigError("\n".join(f"{source}: {p}" if source else p for p in found))

    def to_dict(self) -> dict:
        """The params as plain data, as they stand in ``params.yaml``."""
        return self.model_dump()

    def replace(self, section: str, **changes) -> Self:
        """A copy with ``changes`` in one section (for example ``replace("search", workers=1)``), not re-validated."""
        return self.model_copy(update={section: getattr(self, section).model_copy(update=changes)})


def _sizes(p: Params):
    tasks, s = p.tasks, p.search
    if tasks.train_points < tasks.shots + tasks.query:
        yield (f"tasks.train_points: expected >= tasks.shots + tasks.query = {tasks.shots + tasks.query}, "
               f"got {tasks.train_points}")  # fmt: skip
    if s.n_initial_points > s.n_calls:
        yield f"search.n_initial_points: expected <= search.n_calls ({s.n_calls}), got {s.n_initial_points}"
    if p.train.finetune.max_steps > p.evaluate.max_steps:
        yield (f"train.finetune.max_steps: expected <= evaluate.max_steps ({p.evaluate.max_steps}), the steps "
               f"evaluated, got {p.train.finetune.max_steps}")  # fmt: skip
    if p.meta.query > tasks.query:
        yield f"meta.query: expected <= tasks.query ({tasks.query}), got {p.meta.query}"
    if "query" in s.space and largest_value(s.space["query"]) > tasks.query:
        yield f"search.space.query: values up to {largest_value(s.space['query'])} exceed tasks.query ({tasks.query})"


def _search(p: Params):
    s = p.search
    if s.executor == "local" and s.address is not None:
        yield f"search.address: only used with search.executor: dask, got {s.address!r}"
    if s.executor == "local" and s.tls is not None:
        yield "search.tls: only used with search.executor: dask"
    for key in ("repeats", "class_folds"):
        if getattr(s, key) > 1 and s.median_stop.enabled:
            yield (f"search.{key}: the median rule stops single runs, so it needs {key}: 1 (got {getattr(s, key)}; "
                   "set search.median_stop.enabled: false)")  # fmt: skip
    if s.fidelity != "none" and s.min_iterations >= s.iterations:
        yield (f"search.min_iterations: expected < search.iterations ({s.iterations}) with search.fidelity: "
               f"{s.fidelity}, got {s.min_iterations}")  # fmt: skip
    if s.fidelity != "none" and s.median_stop.enabled:
        yield (f"search.median_stop.enabled: the median rule and search.fidelity: {s.fidelity} both stop trials "
               "early; use one (set search.median_stop.enabled: false or search.fidelity: none)")  # fmt: skip
    if s.fidelity == "none" and s.fidelity_unit != "iterations":
        yield (f"search.fidelity_unit: {s.fidelity_unit} measures the rungs of a multi-fidelity search, so it needs "
               "search.fidelity: asha, successive_halving or hyperband (got none)")  # fmt: skip
    if s.start_from_default and s.max_cost is not None and s.max_cost < 1:
        yield (f"search.max_cost: {s.max_cost} is below the untuned setting's own cost (1), which "
               "search.start_from_default runs as trial 0; raise it to at least 1")  # fmt: skip
    size = math.prod(_grid_values(dim, s.grid_points) for dim in s.space.values())
    if s.method == "grid" and size > MAX_GRID_POINTS:
        yield (f"search.grid_points: {s.grid_points} values per dimension of search.space make a grid of {size:,} "
               f"points, more than {MAX_GRID_POINTS:,}; lower search.grid_points or search fewer "
               "dimensions")  # fmt: skip
    defaults = {name: getattr(getattr(p, TUNABLE[name][0]), name) for name in s.space}
    for name, where in outside_space(defaults, s.space) if s.start_from_default else ():
        yield (f"search.start_from_default: {TUNABLE[name][0]}.{name} = {defaults[name]!r} is {where} "
               f"(search.space.{name})")  # fmt: skip


def _grid_values(dim: dict, points: int) -> int:
    """How many values of ``dim`` a ``method: grid`` search lists."""
    if dim["type"] == "categorical":
        return len(dim["values"])
    return min(points, dim["high"] - dim["low"] + 1) if dim["type"] == "integer" else points


def _family(p: Params):
    tasks = p.tasks
    if not tasks.classification:
        if p.model.arch == "conv":
            yield "model.arch: conv needs images (tasks.family: digits or image_folder), got sinusoid"
        if p.search.objective == "accuracy":
            yield "search.objective: accuracy needs classification (tasks.family: digits or image_folder)"
        if p.search.class_folds > 1:
            yield ("search.class_folds: folds of classes need classification (tasks.family: digits or "
                   f"image_folder), got {p.search.class_folds}")  # fmt: skip
        return
    if tasks.split_by == "alphabet" and tasks.family != "image_folder":
        yield f"tasks.split_by: alphabet needs tasks.family: image_folder in the Omniglot layout, got {tasks.family}"
    if abs(sum(tasks.class_splits.values()) - 1.0) > 1e-9:
        yield f"tasks.class_splits: expected fractions summing to 1, got {tasks.class_splits!r}"
    if tasks.family == "image_folder":
        yield from (f"tasks.{k}: required by tasks.family: image_folder (got null)" for k in ("root", "image_size")
                    if getattr(tasks, k) is None)  # fmt: skip
        root = None if tasks.root is None else PurePosixPath(tasks.root)
        if root is not None and not (root.is_relative_to(RAW_DATA) and ".." not in root.parts):
            yield (f"tasks.root: expected a folder or .zip file under {RAW_DATA}/ (the generate stage depends on "
                   f"{RAW_DATA}, so a changed image reruns it), got {tasks.root!r}")  # fmt: skip
