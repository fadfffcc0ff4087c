"""Imports run downward: core < tasks < learners < search < evaluation < reporting.

A module may import its own layer and the layers below it, never one above. The core is every module
directly in the ``metahpo`` package, or in the ``metahpo.params`` schema. A command (a ``__main__`` module, run
by ``python -m``) sits above every layer, as the stage scripts do, and no module imports one. None imports a
layer above its own:
:data:`KNOWN_UPWARD` is empty and may stay so (an exception would need its reason, and goes once fixed).
"""

from __future__ import annotations

from metahpo.sources import SRC, imported_modules

LAYERS = ("tasks", "learners", "search", "evaluation", "reporting")  # above the core, lowest first
PACKAGE = SRC / "metahpo"

# (importer, imported): why it is still there.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def layer(module: str) -> int:
    """0 for the core, else 1 + the index of the module's domain package in :data:`LAYERS`; a command is above them."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return len(LAYERS) + 1
    return LAYERS.index(parts[1]) + 1 if len(parts) > 1 and parts[1] in LAYERS else 0


def module_name(path) -> str:
    name = ".".join(path.relative_to(SRC).with_suffix("").parts)
    return name.removesuffix(".__init__")


def upward_imports() -> set[tuple[str, str]]:
    """Every ``(importer, imported)`` pair of metahpo modules where the imported one sits in a higher layer.

    Imported modules count by their domain package, so ``metahpo.learners.cost`` is reported as ``metahpo.learners``.
    """
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for imported in imported_modules(path):
            if layer(imported) > layer(importer):
                found.add((importer, ".".join(imported.split(".")[:2])))
    return found


def test_the_layers_are_ordered_as_documented():
    assert layer("metahpo.params") == 0 and layer("metahpo.params.model") == 0 and layer("metahpo") == 0
    assert [layer(f"metahpo.{name}.x") for name in LAYERS] == [1, 2, 3, 4, 5]
    assert layer("metahpo.recipes.__main__") == 6 and layer("metahpo.recipes") == 0


def test_no_module_imports_a_layer_above_its_own():
    new = upward_imports() - set(KNOWN_UPWARD)
    assert not new, "upward imports (move the code down, or the import up): " + ", ".join(
        f"{a} -> {b}" for a, b in sorted(new)
    )


def test_the_known_upward_imports_are_all_still_there():
    gone = set(KNOWN_UPWARD) - upward_imports()
    assert not gone, "fixed, so remove from KNOWN_UPWARD: " + ", ".join(f"{a} -> {b}" for a, b in sorted(gone))


def test_the_walk_finds_an_upward_import(tmp_path, monkeypatch):
    # The walk itself must see an upward import, including one inside a function (run in a worker).
    fake = tmp_path / "metahpo"
    (fake / "tasks").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "tasks" / "__init__.py").write_text("")
    (fake / "reporting").mkdir()
    (fake / "reporting" / "__init__.py").write_text("")
    (fake / "reporting" / "figures.py").write_text("")
    (fake / "tasks" / "bad.py").write_text("def f():\n    from metahpo.reporting.figures import x\n")
    (fake / "tasks" / "__main__.py").write_text("import metahpo.reporting.figures\n")  # a command: above all
    (fake / "reporting" / "cli.py").write_text("import metahpo.tasks.__main__\n")  # no module imports one
    import metahpo.sources as sources

    monkeypatch.setattr(sources, "SRC", tmp_path)
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert upward_imports() == {("metahpo.tasks.bad", "metahpo.reporting"), ("metahpo.reporting.cli", "metahpo.tasks")}
