"""Reading the JSON files the stages hand each other: a missing or unreadable one is named in one line."""

from __future__ import annotations

import json
from pathlib import Path

from metahpo.errors import InputError


def load_json_object(path: Path, error: type[InputError], missing: str) -> dict:
    """The JSON object in ``path``; otherwise ``error`` naming the file, with ``missing``: what to run."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: missing; {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc}); {missing}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}; {missing}")
    return data
