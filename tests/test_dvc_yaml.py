"""dvc.yaml declares exactly what each stage reads: its script and every metahpo module it imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _imports(path: Path) -> set[str]:
    """metahpo modules imported by ``path`` (``from metahpo import x`` counts as ``metahpo.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "metahpo":
            if node.module == "metahpo":
                found.add("metahpo")
                found.update(f"metahpo.{a.name}" for a in node.names if (ROOT / f"src/metahpo/{a.name}.py").exists())
            else:
                found.add(node.module)
    return found


def _module_file(module: str) -> str:
    parts = module.split(".")
    return "src/" + ("/".join(parts) + "/__init__.py" if parts == ["metahpo"] else "/".join(parts) + ".py")


def code_closure(script: str) -> set[str]:
    """The script and every metahpo source file it imports, transitively."""
    todo, seen = [ROOT / script], {script, "src/metahpo/__init__.py"}  # every metahpo import runs __init__
    while todo:
        for module in _imports(todo.pop()):
            rel = _module_file(module)
            if rel not in seen:
                seen.add(rel)
                todo.append(ROOT / rel)
    return seen


@pytest.mark.parametrize("stage", list(DVC["stages"]))
def test_code_deps_are_exactly_the_imported_modules(stage):
    spec = DVC["stages"][stage]
    declared = {d for d in spec["deps"] if d.endswith(".py")}
    expected = code_closure(f"stages/{stage}.py")
    assert declared == expected, f"missing: {sorted(expected - declared)}, extra: {sorted(declared - expected)}"


def test_stage_commands_run_their_own_script():
    for stage, spec in DVC["stages"].items():
        assert spec["cmd"] == f"python stages/{stage}.py"
