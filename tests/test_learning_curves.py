"""benchmarks/learning_curves.py: a tiny real run on digits tasks, and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from metahpo.tasks.generate import generate_stage

from conftest import IMAGE_TASKS, load_default_params, shrink, typed
from project import write_params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import learning_curves  # noqa: E402


def test_each_learner_gets_its_meta_val_curve(tmp_path, monkeypatch, capsys):
    raw = shrink(load_default_params())
    raw["tasks"].update({k: v for k, v in IMAGE_TASKS.items() if k != "splits"})
    raw["tasks"]["splits"].update(IMAGE_TASKS["splits"])
    raw["model"]["arch"], raw["meta"]["query"] = "conv", 3
    write_params(tmp_path, raw)
    monkeypatch.chdir(tmp_path)
    generate_stage(typed(raw), torch.device("cpu"))
    learning_curves.main(["protonet={\"algorithm\": \"protonet\"}", "protomaml={\"algorithm\": \"protomaml\"}",
                          "--iterations", "20"])  # fmt: skip
    header, *rows = capsys.readouterr().out.strip().splitlines()
    assert header == "learner | changes | 10 | 20 | best | seconds"
    assert [row.split(" | ")[0] for row in rows] == ["protonet", "protomaml"]
    for row in rows:
        cells = row.split(" | ")
        curve = [float(c) for c in cells[2:4]]
        assert all(0.0 <= v <= 1.0 for v in curve) and float(cells[4]) == max(curve)


def test_changes_that_are_not_json_are_named():
    with pytest.raises(SystemExit, match="protomaml: the changes are not JSON"):
        learning_curves.main(["protomaml={algorithm: protomaml}"])
