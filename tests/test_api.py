"""The public API: what ``from metahpo import ...`` gives, the README's Python example, and load_run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import metahpo
from metahpo.errors import ArtifactError
from metahpo.reporting.runs import load_run
from metahpo.sources import source_closure

ROOT = Path(__file__).resolve().parents[1]


def readme_python() -> str:
    """The first Python block of the README's Python section."""
    section = (ROOT / "README.md").read_text().split("\n## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_every_public_name_resolves_and_is_listed():
    for name in metahpo.__all__:
        assert getattr(metahpo, name) is not None, name
    assert set(metahpo.__all__) <= set(dir(metahpo))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        metahpo.nope  # noqa: B018


def test_importing_the_package_imports_no_domain_module():
    # A stage imports one module; the package's top level must not drag in the rest (nor into DVC deps).
    code = "import sys, metahpo; print(sorted(m for m in sys.modules if m.startswith('metahpo.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {p.name for p in source_closure(ROOT / "src/metahpo/__init__.py")} == {"__init__.py"}


def test_the_readme_example_is_ten_lines_and_runs(monkeypatch, capsys):
    code = readme_python()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})
    loss, setting_line = capsys.readouterr().out.splitlines()
    assert 0 < float(loss) < 4  # predicting 0 scores about A^2 / 2 ~ 4.2 on these amplitudes
    assert "'algorithm'" in setting_line


def project_with_reports(tmp_path: Path, *names: Path) -> Path:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_load_run_reads_each_part_and_leaves_absent_ones_none(tmp_path):
    from metahpo import paths

    project = project_with_reports(tmp_path, paths.TRIALS, paths.BEST)
    run = load_run(project)
    assert run.metrics is None and run.evaluation is None
    assert len(run.trials) == len((ROOT / paths.TRIALS).read_text().splitlines()) - 1
    assert run.best == json.loads((ROOT / paths.BEST).read_text())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no run results"),
        (lambda p: (p / "reports/metrics.json").write_text("[1]"), "reports/metrics.json: expected a JSON object"),
        (lambda p: (p / "reports/search/best.json").write_text("{"), "reports/search/best.json: not valid JSON"),
        (lambda p: (p / "reports/search/trials.csv").write_bytes(b""), "reports/search/trials.csv: not a readable"),
    ],
)
def test_load_run_names_a_bad_file(tmp_path, setup, message):
    (tmp_path / "reports/search").mkdir(parents=True)
    setup(tmp_path)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        load_run(tmp_path)


def test_load_run_refuses_a_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="not a folder"):
        load_run(tmp_path / "absent")
