"""dvc.yaml declares exactly what each stage reads: its script and every metahpo module it imports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from metahpo.sources import import_closure, imported_modules, source_closure

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def code_closure(script: str) -> set[str]:
    """The script and every metahpo source file it imports, transitively, relative to the project."""
    return {str(path.relative_to(ROOT)) for path in source_closure(ROOT / script)}


@pytest.mark.parametrize("stage", list(DVC["stages"]))
def test_code_deps_are_exactly_the_imported_modules(stage):
    spec = DVC["stages"][stage]
    declared = {d for d in spec["deps"] if d.endswith(".py")}
    expected = code_closure(f"stages/{stage}.py")
    assert declared == expected, f"missing: {sorted(expected - declared)}, extra: {sorted(declared - expected)}"


def test_stage_commands_run_their_own_script():
    for stage, spec in DVC["stages"].items():
        assert spec["cmd"] == f"python stages/{stage}.py"


def test_the_closure_follows_subpackages_and_imports_inside_functions():
    trial = ROOT / "src/metahpo/search/trial.py"
    # run_trial imports metahpo.runtime inside the function (in the worker process); the package
    # __init__ files above every imported module run first, so they count too.
    assert {"metahpo.runtime", "metahpo.learners", "metahpo.learners.metatrain"} <= imported_modules(trial)
    closure = {str(p.relative_to(ROOT)) for p in source_closure(trial)}
    assert {"src/metahpo/runtime.py", "src/metahpo/__init__.py", "src/metahpo/learners/__init__.py",
            "src/metahpo/learners/conv.py"} <= closure  # fmt: skip
    assert not any("reporting" in p or "evaluation" in p for p in closure)


def test_the_search_fingerprint_covers_its_code_and_nothing_else():
    search = {str(p.relative_to(ROOT)) for p in import_closure("metahpo.search.driver")}
    assert search == code_closure("stages/search.py") - {"stages/search.py"}
    assert "src/metahpo/reporting/report.py" not in search and "src/metahpo/search/trial.py" in search


def _fingerprint_of_copy(tmp_path, monkeypatch, edit: tuple[str, str, str] | None) -> str:
    """The search fingerprint with the code read from a copy of the package, ``edit`` = (file, old, new) applied."""
    from metahpo.search import trial_log

    from conftest import load_default_params, shrink, typed

    copy = tmp_path / ("edited" if edit else "same") / "metahpo"
    shutil.copytree(ROOT / "src/metahpo", copy)
    if edit:
        name, old, new = edit
        text = (copy / name).read_text()
        assert old in text
        (copy / name).write_text(text.replace(old, new, 1))
    real = ROOT / "src/metahpo"
    monkeypatch.setattr(trial_log, "SRC", copy.parent)
    monkeypatch.setattr(trial_log, "import_closure", lambda m: [copy / p.relative_to(real) for p in import_closure(m)])
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    return trial_log.fingerprint(typed(shrink(load_default_params())), manifest)


def test_the_search_fingerprint_ignores_error_wording_but_not_trial_code(tmp_path, monkeypatch):
    same = _fingerprint_of_copy(tmp_path, monkeypatch, None)
    for reworded in (
        ("params/types.py", '"a non-empty path"', '"a path that is not empty"'),
        ("params/model.py", "got {tasks.train_points}", "not {tasks.train_points}"),
        ("search/params_rules.py", "drop the dimension", "remove the dimension"),
    ):
        assert _fingerprint_of_copy(tmp_path / "a" / reworded[0], monkeypatch, reworded) == same
    changed = ("space.py", 'dim["high"]', 'dim["low"]')
    assert _fingerprint_of_copy(tmp_path / "b", monkeypatch, changed) != same
    inner = ("learners/algorithms/base.py", "import math", "import math  # changed")
    assert _fingerprint_of_copy(tmp_path / "c", monkeypatch, inner) != same
