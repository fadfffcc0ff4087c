"""The source files a piece of code runs: the file itself and every metahpo module it imports, transitively.

Imports are read from the syntax tree (also those inside functions, which run in worker processes), and a
module brings the ``__init__.py`` of every package above it, which Python runs first. The search stage
fingerprints exactly this closure of its own code, and ``dvc.yaml`` lists it as each stage's code deps.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # the folder that holds the metahpo package


def module_file(module: str) -> Path | None:
    """The file of a dotted metahpo module or package, or None if there is none."""
    base = SRC.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def _packages(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the metahpo modules (and packages) that ``path`` imports, with the packages above them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "metahpo":
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}"))
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names if a.name.split(".")[0] == "metahpo")
        for name in names:
            found.update([name, *_packages(name)])
    return found


def source_closure(start: Path) -> list[Path]:
    """``start`` and the files of every metahpo module it imports, transitively, in a fixed order."""
    seen, todo = {start.resolve()}, [start.resolve()]
    while todo:
        for module in imported_modules(todo.pop()):
            path = module_file(module)
            if path is not None and path not in seen:
                seen.add(path)
                todo.append(path)
    return sorted(seen)


def import_closure(module: str) -> list[Path]:
    """The source closure of a dotted metahpo module, with the packages above it."""
    paths = {path for name in (*_packages(module), module) for path in source_closure(module_file(name))}
    return sorted(paths)
