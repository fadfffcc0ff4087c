"""Typed params: ``params.yaml`` validated as a whole, then read into one frozen dataclass per section.

Every stage calls :func:`load_params` before any work. Validation (:mod:`metahpo.validation`) collects
every problem and reports each on its own line with its full key path, e.g.::

    params.yaml: meta.inner_lr: expected a number > 0 and <= 100, got -0.1

Only then are the values read into :class:`Params`, so the library never sees an unchecked value and
reads ``params.search.median_stop.enabled`` instead of nested dictionary lookups.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

from metahpo.errors import ConfigError
from metahpo.task_names import CLASSIFICATION_FAMILIES, DIGITS_SIDE
from metahpo.validation import validate
from metahpo.yaml_files import load_yaml

DEFAULT_PATH = "params.yaml"


@dataclass(frozen=True)
class OodParams:
    """Amplitude and phase ranges of the out-of-distribution sinusoid tasks."""

    amplitude: list[float]
    phase: list[float]


@dataclass(frozen=True)
class TaskParams:
    """The ``tasks`` section: which task family, and how its held-out tasks are stored."""

    family: str
    shots: int
    query: int
    amplitude: list[float]
    phase: list[float]
    x_range: list[float]
    eval_shots: list[int]
    grid_points: int
    train_points: int
    ood: OodParams
    splits: dict[str, int]
    ways: int
    class_splits: dict[str, float]
    rotations: list[int]
    split_by: str
    image_size: int | None
    root: str | None

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


@dataclass(frozen=True)
class ModelParams:
    """The ``model`` section: the untuned architecture."""

    arch: str
    hidden: int
    layers: int
    representation: int


@dataclass(frozen=True)
class MetaParams:
    """The ``meta`` section: the untuned meta-learner and outer loop (the MAML paper's defaults)."""

    algorithm: str
    inner_lr: float
    inner_steps: int
    outer_lr: float
    meta_batch_size: int
    query: int
    outer_schedule: str
    rule_hidden: int
    inner_rates: str
    multi_step_loss: float
    first_order_fraction: float


@dataclass(frozen=True)
class MedianStop:
    """``search.median_stop``: early stopping of trials above the median of earlier ones."""

    enabled: bool
    checkpoints: int
    min_trials: int


@dataclass(frozen=True)
class SearchParams:
    """The ``search`` section. ``space`` maps a meta-hyperparameter to its validated dimension."""

    method: str
    acq_func: str
    n_calls: int
    n_initial_points: int
    iterations: int
    objective_steps: int
    stable_steps: int
    objective: str
    repeats: int
    class_folds: int
    start_from_default: bool
    workers: int
    executor: str
    address: str | None
    tls: dict[str, str] | None
    retries: int
    grid_points: int
    median_stop: MedianStop
    fidelity: str
    min_iterations: int
    eta: int
    fidelity_unit: str
    max_cost: float | None
    space: dict[str, dict]


@dataclass(frozen=True)
class FinetuneParams:
    """``train.finetune``: the grid over which the pretrained baseline's SGD rate and steps are chosen."""

    lr: list[float]
    lr_points: int
    max_steps: int
    eta: int


@dataclass(frozen=True)
class TrainParams:
    """The ``train`` section: the final training of every learner."""

    iterations: int
    log_every: int
    patience: int
    workers: int
    compare_kinds: bool
    finetune: FinetuneParams


@dataclass(frozen=True)
class EvaluateParams:
    """The ``evaluate`` section: the held-out protocol."""

    max_steps: int
    task_chunk: int


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``, validated."""

    seed: int
    device: str
    threads: int
    tasks: TaskParams
    model: ModelParams
    meta: MetaParams
    search: SearchParams
    train: TrainParams
    evaluate: EvaluateParams

    @classmethod
    def from_dict(cls, raw: dict, source: str = "") -> Params:
        """Read validated params; raise :class:`ConfigError` listing every problem (each prefixed by ``source``)."""
        problems = validate(raw)
        if problems:
            raise ConfigError("\n".join(f"{source}: {p}" if source else p for p in problems))
        return _build(cls, raw)

    def to_dict(self) -> dict:
        """The params as plain data, as they stand in ``params.yaml``."""
        return dataclasses.asdict(self)

    def replace(self, section: str, **changes) -> Params:
        """A copy with ``changes`` in one section (for example ``replace("search", workers=1)``)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


def _build(cls, raw: dict):
    """``cls`` from a validated mapping, nested sections included."""
    values = {}
    for field in fields(cls):
        value = raw[field.name]
        nested = SECTIONS.get((cls, field.name))
        values[field.name] = _build(nested, value) if nested else value
    return cls(**values)


SECTIONS = {
    (Params, "tasks"): TaskParams,
    (Params, "model"): ModelParams,
    (Params, "meta"): MetaParams,
    (Params, "search"): SearchParams,
    (Params, "train"): TrainParams,
    (Params, "evaluate"): EvaluateParams,
    (TaskParams, "ood"): OodParams,
    (SearchParams, "median_stop"): MedianStop,
    (TrainParams, "finetune"): FinetuneParams,
}


def load_params(path: str | Path = DEFAULT_PATH) -> Params:
    """Read params.yaml as DVC does, then validate it; :class:`ConfigError` lists every problem, each with the file."""
    return Params.from_dict(read_params_file(path), str(path))


def read_params_file(path: str | Path = DEFAULT_PATH):
    """The plain data of ``path`` read exactly as DVC reads it (YAML 1.2), before validation.

    Test helpers and benchmarks that edit params use this too, so that they see the values the stages see.
    """
    return load_yaml(path, ConfigError)
