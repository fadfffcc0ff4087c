"""Write ``params.schema.json``: the JSON schema of params.yaml, for editor completion and checks.

Usage: ``python scripts/params_schema.py``. ``tests/test_params_schema.py`` checks that the committed file is
what this writes. params.yaml names it on its first line, which the YAML language server (VS Code, and other
editors) reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import metahpo.search  # noqa: F401  (registers the learners' and the search's names, listed in the schema)
from metahpo.params import json_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "params.schema.json"


def schema_text() -> str:
    """The text of params.schema.json."""
    return json.dumps(json_schema(), indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA.write_text(schema_text())
    print(f"{SCHEMA.relative_to(ROOT)}: written")
