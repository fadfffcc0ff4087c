"""All of params.yaml as one frozen model, and the rules that span its sections (run once every key is valid)."""

from __future__ import annotations

from pathlib import PurePosixPath

from pydantic import ValidationError, model_validator

from metahpo.errors import ConfigError
from metahpo.params.checks import error_lines
from metahpo.params.dimensions import TUNABLE
from metahpo.params.sections import (
    EvaluateParams,
    MetaParams,
    ModelParams,
    SearchParams,
    Section,
    TaskParams,
    TrainParams,
)
from metahpo.params.types import RULES, Choice, Int, problems
from metahpo.space import largest_value, outside_space

RAW_DATA = "data/raw"
# The grid search lists every point before it starts; a grid this large would never be run through anyway.
MAX_GRID_POINTS = 100_000


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
    def _across_sections(self) -> Params:
        found = [p for rule in (*CORE_RULES, *RULES) for p in rule(self)]
        if found:
            raise problems(found)
        return self

    @classmethod
    def from_dict(cls, raw, source: str = "") -> Params:
        """Read validated params; raise :class:`ConfigError` listing every problem (each prefixed by ``source``)."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            found = error_lines(exc, cls)
        raise ConfigError("\n".join(f"{source}: {p}" if source else p for p in found))

    def to_dict(self) -> dict:
        """The params as plain data, as they stand in ``params.yaml``."""
        return self.model_dump()

    def replace(self, section: str, **changes) -> Params:
        """A copy with ``changes`` in one section (for example ``replace("search", workers=1)``), not re-validated."""
        return self.model_copy(update={section: getattr(self, section).model_copy(update=changes)})


def _sizes(p: Params) -> list[str]:
    tasks, search, found = p.tasks, p.search, []
    if tasks.train_points < tasks.shots + tasks.query:
        found.append(
            f"tasks.train_points: expected >= tasks.shots + tasks.query = {tasks.shots + tasks.query}, "
            f"got {tasks.train_points}"
        )
    if search.n_initial_points > search.n_calls:
        found.append(
            f"search.n_initial_points: expected <= search.n_calls ({search.n_calls}), got {search.n_initial_points}"
        )
    finetune_steps, max_steps = p.train.finetune.max_steps, p.evaluate.max_steps
    if finetune_steps > max_steps:
        found.append(
            f"train.finetune.max_steps: expected <= evaluate.max_steps ({max_steps}), the steps evaluated, "
            f"got {finetune_steps}"
        )
    limit = tasks.query
    if p.meta.query > limit:
        found.append(f"meta.query: expected <= tasks.query ({limit}), got {p.meta.query}")
    if "query" in search.space and largest_value(search.space["query"]) > limit:
        found.append(
            f"search.space.query: values up to {largest_value(search.space['query'])} exceed tasks.query ({limit})"
        )
    return found


def _search(p: Params) -> list[str]:
    s, found = p.search, []
    if s.executor == "local" and s.address is not None:
        found.append(f"search.address: only used with search.executor: dask, got {s.address!r}")
    if s.executor == "local" and s.tls is not None:
        found.append("search.tls: only used with search.executor: dask")
    for key in ("repeats", "class_folds"):
        if getattr(s, key) > 1 and s.median_stop.enabled:
            found.append(
                f"search.{key}: the median rule stops single runs, so it needs {key}: 1 "
                f"(got {getattr(s, key)}; set search.median_stop.enabled: false)"
            )
    if s.fidelity != "none":
        if s.min_iterations >= s.iterations:
            found.append(
                f"search.min_iterations: expected < search.iterations ({s.iterations}) with "
                f"search.fidelity: {s.fidelity}, got {s.min_iterations}"
            )
        if s.median_stop.enabled:
            found.append(
                f"search.median_stop.enabled: the median rule and search.fidelity: {s.fidelity} both stop "
                "trials early; use one (set search.median_stop.enabled: false or search.fidelity: none)"
            )
    elif s.fidelity_unit != "iterations":
        found.append(
            f"search.fidelity_unit: {s.fidelity_unit} measures the rungs of a multi-fidelity search, so it "
            "needs search.fidelity: successive_halving or hyperband (got none)"
        )
    if s.start_from_default and s.max_cost is not None and s.max_cost < 1:
        found.append(
            f"search.max_cost: {s.max_cost} is below the untuned setting's own cost (1), which "
            "search.start_from_default runs as trial 0; raise it to at least 1"
        )
    if s.method == "grid":
        found.extend(_grid_size(s))
    if s.start_from_default:
        defaults = {name: getattr(getattr(p, TUNABLE[name][0]), name) for name in s.space}
        found.extend(
            f"search.start_from_default: {TUNABLE[name][0]}.{name} = {defaults[name]!r} is {where} "
            f"(search.space.{name})"
            for name, where in outside_space(defaults, s.space)
        )
    return found


def _grid_size(search: SearchParams) -> list[str]:
    """A ``method: grid`` whose full grid is too large to list."""
    size = 1
    for dim in search.space.values():
        if dim["type"] == "categorical":
            size *= len(dim["values"])
        elif dim["type"] == "integer":
            size *= min(search.grid_points, dim["high"] - dim["low"] + 1)
        else:
            size *= search.grid_points
    if size <= MAX_GRID_POINTS:
        return []
    return [
        f"search.grid_points: {search.grid_points} values per dimension of search.space make a grid of "
        f"{size:,} points, more than {MAX_GRID_POINTS:,}; lower search.grid_points or search fewer dimensions"
    ]


def _family(p: Params) -> list[str]:
    tasks, found = p.tasks, []
    if not tasks.classification:
        if p.model.arch == "conv":
            found.append("model.arch: conv needs images (tasks.family: digits or image_folder), got sinusoid")
        if p.search.objective == "accuracy":
            found.append("search.objective: accuracy needs classification (tasks.family: digits or image_folder)")
        if p.search.class_folds > 1:
            found.append(
                f"search.class_folds: folds of classes need classification (tasks.family: digits or image_folder), "
                f"got {p.search.class_folds}"
            )
        return found
    if tasks.split_by == "alphabet" and tasks.family != "image_folder":
        found.append(
            f"tasks.split_by: alphabet needs tasks.family: image_folder in the Omniglot layout, got {tasks.family}"
        )
    if abs(sum(tasks.class_splits.values()) - 1.0) > 1e-9:
        found.append(f"tasks.class_splits: expected fractions summing to 1, got {tasks.class_splits!r}")
    if tasks.family == "image_folder":
        found.extend(
            f"tasks.{key}: required by tasks.family: image_folder (got null)"
            for key in ("root", "image_size")
            if getattr(tasks, key) is None
        )
        root = tasks.root
        inside = (
            root is not None and PurePosixPath(root).is_relative_to(RAW_DATA) and ".." not in PurePosixPath(root).parts
        )
        if root is not None and not inside:
            found.append(
                f"tasks.root: expected a folder or .zip file under {RAW_DATA}/ (the generate stage depends on "
                f"{RAW_DATA}, so a changed image reruns it), got {root!r}"
            )
    return found


CORE_RULES = (_sizes, _search, _family)


def validate(params) -> list[str]:
    """Return every problem found in ``params`` (plain data; an empty list means valid)."""
    try:
        Params.model_validate(params)
    except ValidationError as exc:
        return error_lines(exc, Params)
    return []
