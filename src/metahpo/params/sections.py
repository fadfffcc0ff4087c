"""The sections of params.yaml as frozen pydantic models: unknown keys refused, bounds in ``Field``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, WrapValidator
from typing_extensions import TypedDict

from metahpo.params.dimensions import Space, T
from metahpo.params.types import (
    Address,
    Bool,
    Choice,
    DistinctList,
    Int,
    Interval,
    Name,
    Number,
    RateRange,
    Text,
    problem,
    problems,
)
from metahpo.task_names import CLASSIFICATION_FAMILIES, DIGITS_SIDE, FAMILIES, SPLIT_BY

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Section(BaseModel):
    """A section of params.yaml: frozen, every key required, no other key."""

    model_config = STRICT


class OodParams(Section):
    """Amplitude and phase ranges of the out-of-distribution sinusoid tasks."""

    amplitude: Interval(min_low=0)
    phase: Interval()


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
    meta_train: Number(gt=0, le=1)
    meta_val: Number(gt=0, le=1)
    meta_test: Number(gt=0, le=1)


class TaskParams(Section):
    """The ``tasks`` section: which task family, and how its held-out tasks are stored."""

    family: Choice(*FAMILIES)
    shots: Int(1, 1000)
    query: Int(1, 1000)
    amplitude: Interval(min_low=0)
    phase: Interval()
    x_range: Interval()
    eval_shots: DistinctList(Int(1, 1000), "a non-empty list of distinct integers in [1, 1000]")
    grid_points: Int(2, 10_000)
    train_points: Int(2, 10_000)
    ood: OodParams
    splits: Splits
    ways: Int(2, 1000)
    class_splits: ClassSplits
    rotations: DistinctList(Choice(0, 90, 180, 270), "a non-empty list of distinct rotations from 0, 90, 180, 270")
    split_by: Choice(*SPLIT_BY)
    image_size: Int(4, 512) | None
    root: Text | None

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
    hidden: T.hidden
    layers: T.layers
    representation: T.representation


class MetaParams(Section):
    """The ``meta`` section: the untuned meta-learner and outer loop (the MAML paper's defaults)."""

    algorithm: T.algorithm
    inner_lr: T.inner_lr
    inner_steps: T.inner_steps
    outer_lr: T.outer_lr
    meta_batch_size: T.meta_batch_size
    query: T.query
    outer_schedule: T.outer_schedule
    rule_hidden: T.rule_hidden
    inner_rates: T.inner_rates
    multi_step_loss: T.multi_step_loss
    first_order_fraction: T.first_order_fraction
    extra_steps: T.extra_steps


class MedianStop(Section):
    """``search.median_stop``: early stopping of trials above the median of earlier ones."""

    enabled: Bool
    checkpoints: Int(2, 100)
    min_trials: Int(1, 10_000)


TLS_KEYS = ("ca_file", "cert", "key")


def _tls(v, handler):
    """``null`` or ``{ca_file, cert, key}``: PEM files of the CA, and of this client's certificate and key."""
    if v is None:
        return v
    if not isinstance(v, dict) or set(v) != set(TLS_KEYS):
        raise problem(f"expected null or a mapping with keys {', '.join(TLS_KEYS)}, got {v!r}")
    found = [
        f"search.tls.{key}: expected the path of a PEM file, got {v[key]!r}"
        if not isinstance(v[key], str) or not v[key].strip()
        else f"search.tls.{key}: {v[key]} is not a file"
        for key in TLS_KEYS
        if not (isinstance(v[key], str) and v[key].strip() and Path(v[key]).is_file())
    ]
    if found:
        raise problems(found)
    return v


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
    start_from_default: Bool
    workers: Int(1, 1024)
    executor: Name("executor")
    address: Address
    tls: Annotated[TlsFiles | None, WrapValidator(_tls)]
    retries: Int(0, 10)
    grid_points: Int(2, 100)
    median_stop: MedianStop
    fidelity: Name("fidelity")
    min_iterations: Int(1, 10_000_000)
    eta: Int(2, 100)
    fidelity_unit: Name("fidelity_unit")
    max_cost: Number(gt=0, le=1e6) | None
    space: Space


class FinetuneParams(Section):
    """``train.finetune``: the grid over which the pretrained baseline's SGD rate and steps are chosen."""

    lr: RateRange
    lr_points: Int(1, 1000)
    max_steps: T.inner_steps
    eta: Int(1, 100)


class TrainParams(Section):
    """The ``train`` section: the final training of every learner."""

    iterations: Int(1, 100_000_000)
    log_every: Int(1, 10_000_000)
    patience: Int(0, 1_000_000)
    workers: Int(1, 64)
    compare_kinds: Bool
    finetune: FinetuneParams


class EvaluateParams(Section):
    """The ``evaluate`` section: the held-out protocol."""

    max_steps: Int(0, 100)
    task_chunk: Int(1, 1_000_000)
