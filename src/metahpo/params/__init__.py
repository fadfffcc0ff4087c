"""Typed params: ``params.yaml`` validated as a whole by one pydantic schema, read into frozen models.

Every stage calls :func:`load_params` before any work. Every problem is reported at once, each on its own
line with its full key path, e.g.::

    params.yaml: meta.inner_lr: expected a number > 0 and <= 100, got -0.1

The library then reads ``params.search.median_stop.enabled`` instead of nested dictionary lookups. The
schema lives in the core and imports no domain package: the names a domain owns (the algorithms, the search
methods) and the rules that need its code are registered by that package (:func:`register_names`,
:func:`register_rule`; ``metahpo.search`` registers the learners' and its own on import). ``params.schema.json``
is this schema for editors (``python scripts/params_schema.py`` writes it).
"""

from __future__ import annotations

from pathlib import Path

from metahpo.errors import ConfigError
from metahpo.params.checks import Check, Rule, choice, integer, section
from metahpo.params.dimensions import TUNABLE
from metahpo.params.model import MAX_GRID_POINTS, Params, validate
from metahpo.params.sections import (
    EvaluateParams,
    FinetuneParams,
    MedianStop,
    MetaParams,
    ModelParams,
    OodParams,
    SearchParams,
    TaskParams,
    TrainParams,
)
from metahpo.params.types import TASK_RANGE_LIMIT, VOCABULARY, register_names, register_rule
from metahpo.yaml_files import load_yaml

DEFAULT_PATH = "params.yaml"

__all__ = [
    "DEFAULT_PATH", "MAX_GRID_POINTS", "TASK_RANGE_LIMIT", "TUNABLE", "VOCABULARY", "Check", "EvaluateParams",
    "FinetuneParams", "MedianStop", "MetaParams", "ModelParams", "OodParams", "Params", "Rule", "SearchParams",
    "TaskParams", "TrainParams", "choice", "integer", "json_schema", "load_params", "read_params_file",
    "register_names", "register_rule", "section", "validate", "validate_setting",
]  # fmt: skip


def json_schema() -> dict:
    """The JSON schema of params.yaml, for editors (names of a vocabulary listed once its package registered them)."""
    schema = Params.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "metahpo params.yaml", **schema}


def validate_setting(setting, keys: tuple[str, ...] = tuple(TUNABLE)) -> list[str]:
    """Problems with a mapping of tunable meta-hyperparameters (a learner config, a search result)."""
    return section({k: TUNABLE[k][1] for k in keys})(setting, "")


def load_params(path: str | Path = DEFAULT_PATH) -> Params:
    """Read params.yaml as DVC does, then validate it; :class:`ConfigError` lists every problem, each with the file."""
    return Params.from_dict(read_params_file(path), str(path))


def read_params_file(path: str | Path = DEFAULT_PATH):
    """The plain data of ``path`` read exactly as DVC reads it (YAML 1.2), before validation.

    Test helpers and benchmarks that edit params use this too, so that they see the values the stages see.
    """
    return load_yaml(path, ConfigError)
