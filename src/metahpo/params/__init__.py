"""Typed params: ``params.yaml`` validated as a whole by one pydantic schema, read into frozen models.

Every stage calls :func:`load_params` before any work; every problem is reported at once, one line each naming
its key path (``params.yaml: meta.inner_lr: expected a number > 0 and <= 100, got -0.1``). The schema imports
no domain package: a domain registers its names and rules (importing ``metahpo.search`` registers them).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from metahpo.errors import ConfigError
from metahpo.params.model import PRIORS, TUNABLE, FinetuneParams, Params, SearchParams, TaskParams
from metahpo.params.types import VOCABULARY, Choice, Int, Rule, error_lines, register_names, register_rule, section
from metahpo.yaml_files import load_yaml

__all__ = [
    "PRIORS", "TUNABLE", "VOCABULARY", "Choice", "FinetuneParams", "Int", "Params", "Rule", "SearchParams",
    "TaskParams", "json_schema", "load_params", "read_params_file", "register_names", "register_rule", "section",
    "validate", "validate_setting",
]  # fmt: skip


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml as DVC does, then validate it; :class:`ConfigError` lists every problem, each with the file."""
    return Params.from_dict(read_params_file(path), str(path))


def read_params_file(path: str | Path = "params.yaml"):
    """The plain data of ``path`` read exactly as DVC reads it (YAML 1.2), before validation (test helpers use it)."""
    return load_yaml(path, ConfigError)


def validate(params) -> list[str]:
    """Every problem found in ``params`` (plain data; an empty list means valid)."""
    try:
        Params.model_validate(params)
    except ValidationError as exc:
        return error_lines(exc, Params)
    return []


def validate_setting(setting, keys: tuple[str, ...] = tuple(TUNABLE)) -> list[str]:
    """Problems with a mapping of tunable meta-hyperparameters (a learner config, a search result)."""
    return section({k: TUNABLE[k][1] for k in keys})(setting, "")


def json_schema() -> dict:
    """The JSON schema of params.yaml, for editors (a vocabulary's names listed once its package registered them)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "metahpo params.yaml",
            **Params.model_json_schema()}  # fmt: skip
