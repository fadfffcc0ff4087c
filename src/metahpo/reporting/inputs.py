"""The report stage's inputs, read and checked before anything is drawn.

The report reads what four stages wrote: ``reports/evaluation.json`` and ``reports/plots/`` (evaluate),
the models' configs and ``reports/train/`` (train), and ``reports/search/`` (search). A missing,
truncated or hand-edited file is refused in one line naming it (and the entry), before any figure is
drawn; :class:`Record` names the file and key of an entry that a nested lookup does not find.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from metahpo import paths
from metahpo.errors import ArtifactError, first_line
from metahpo.evaluation.panels import PANELS, panel_path
from metahpo.evaluation.protocol import KIND_ENTRY, MODULES
from metahpo.json_files import (
    INTEGER,
    NUMBER,
    OBJECT,
    TEXT,
    Each,
    ListOf,
    load_json_object,
    parse_json,
    schema_problem,
)
from metahpo.learners.artifacts import load_learner
from metahpo.params import TUNABLE, validate_setting

RERUN = "rerun the stage that writes it (dvc repro)"
TRIAL_COLUMNS = {"trial": True, "status": False, "objective": True, "told": True, "best_so_far": True,
                 "iterations": True, "cost_macs": True, "rungs": False, "point": False}  # fmt: skip


# How the pretrained baseline fine-tunes, as its config records it (the report quotes it).
FINETUNED = {
    "finetuning": {
        "adapts": TEXT,
        "inner_lr": NUMBER,
        "inner_steps": INTEGER,
        "score": TEXT,
        "val_score": NUMBER,
        "grid": {"inner_lr": ListOf(NUMBER), "inner_steps": ListOf(INTEGER), "val_score": OBJECT},
    }
}


class Record(dict):
    """A JSON object whose missing key is an :class:`ArtifactError` naming its file and key path."""

    def __init__(self, data: dict, source: Path, where: str = ""):
        super().__init__({k: _wrap(v, source, f"{where}.{k}" if where else k) for k, v in data.items()})
        self.source, self.where = source, where

    def __missing__(self, key):
        entry = f"{self.where}.{key}" if self.where else key
        raise ArtifactError(f"{self.source}: has no entry {entry}; {RERUN}")


def _wrap(value, source: Path, where: str):
    if isinstance(value, dict):
        return Record(value, source, where)
    if isinstance(value, list):
        return [_wrap(v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _evaluation_problem(metrics: dict) -> str:
    """Where ``evaluation.json`` holds what the report cannot format, as ``"key.path: ..."``; else ``""``.

    Every entry is a number or null (a diverged step), except a reference's ``method`` (its description)
    and ``kinds`` (the kinds side by side, null when not compared); a step level is ``step<number>``.
    """
    kinds = metrics.get("kinds")
    if kinds is not None:
        problem = schema_problem(kinds, Each(KIND_ENTRY), "kinds")
        if problem:
            return problem
    stack = [(value, key) for key, value in metrics.items() if key != "kinds"]
    while stack:
        value, where = stack.pop()
        last = where.rsplit(".", 1)[-1]
        if last.startswith("step") and not last.removeprefix("step").isdigit():
            return f"{where}: not a step (step0, step1, ...)"
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}") for k, v in value.items())
        elif not (
            value is None
            or (isinstance(value, int | float) and not isinstance(value, bool))
            or (isinstance(value, str) and where.count(".") == 1 and last == "method")
        ):
            return f"{where}: expected a number or null, got {value!r:.40}"
    return ""


def read_json(path: Path, numbers: bool = False, schema=None) -> Record:
    """A JSON object from ``path`` (with the keys and types of ``schema``) as a :class:`Record`; with
    ``numbers`` (``evaluation.json``), every entry a number or null, as :func:`_evaluation_problem` says."""
    data = load_json_object(path, ArtifactError, RERUN, schema)
    problem = _evaluation_problem(data) if numbers else ""
    if problem:
        raise ArtifactError(f"{path}: {problem}; {RERUN}")
    return Record(data, path)


def read_table(path: Path, columns, sep: str = ",") -> pd.DataFrame:
    """A CSV (or TSV) with at least ``columns``; a mapping ``{column: numeric}`` also checks the numeric ones."""
    try:
        table = pd.read_csv(path, sep=sep)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; {RERUN}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable table ({first_line(exc)}); {RERUN}") from None
    if table.empty:
        raise ArtifactError(f"{path}: no rows; {RERUN}")
    numeric = columns if isinstance(columns, dict) else dict.fromkeys(columns, True)
    for column, is_number in numeric.items():
        if column not in table.columns:
            raise ArtifactError(f"{path}: no column {column!r}; {RERUN}")
        if is_number and not pd.api.types.is_numeric_dtype(table[column]):
            raise ArtifactError(f"{path}: column {column!r} holds values that are not numbers; {RERUN}")
    return table


def read_trials(space: dict) -> pd.DataFrame:
    """The search's trial log, with the columns the report draws and a point of ``space`` in every row."""
    trials = read_table(paths.TRIALS, TRIAL_COLUMNS)
    for row, (rungs, point, told) in enumerate(zip(trials["rungs"], trials["point"], trials["told"]), start=2):
        try:
            rungs, point = parse_json(rungs, finite=False), parse_json(point)
            if not (isinstance(rungs, dict) and isinstance(point, dict) and set(space) <= set(point)):
                raise ValueError
        except (TypeError, ValueError):
            raise ArtifactError(
                f"{paths.TRIALS}: row {row}: rungs or point is not a JSON object with the keys of search.space; {RERUN}"
            ) from None
        if not math.isfinite(told):
            raise ArtifactError(f"{paths.TRIALS}: row {row}: told is not a finite number; {RERUN}")
    return trials


def check_report_inputs(family, compared: list[str]) -> None:
    """Refuse a missing or malformed model config, plot panel or training log of ``family``'s learners, or
    model config of the learners ``compared`` beside them (the other kinds', in the report's table only)."""
    load_learner(paths.MODELS / "tuned", torch.device("cpu"), family)  # drawn in the examples figure
    for panel in MODULES[family].PLOT_PANELS:
        for metric in MODULES[family].PLOT_METRICS:
            path = panel_path(family.tasks.family, panel, metric)
            table = read_table(path, {"learner": False, PANELS[panel][2]: True, "mean": True, "ci95": True})
            missing = [name for name in family.learners if name not in set(table["learner"])]
            if missing:
                raise ArtifactError(f"{path}: no rows for learner {missing[0]}; {RERUN}")
    for name in (*family.learners, *compared):
        config = read_json(paths.MODELS / name / "config.json", schema=FINETUNED if name == "pretrained" else None)
        setting = config["setting"]
        if not isinstance(setting, dict):
            problems = [": not a mapping"]
        elif setting.get("algorithm") not in family.algorithms:
            problems = [f"algorithm: expected one of {', '.join(family.algorithms)}, got {setting.get('algorithm')!r}"]
        else:  # the baselines' algorithms (protonet) are no search choice: the rest is checked as tunable
            rest = {k: v for k, v in setting.items() if k != "algorithm"}
            problems = validate_setting(rest, tuple(k for k in TUNABLE if k != "algorithm"))
        if problems:
            raise ArtifactError(f"{paths.MODELS / name / 'config.json'}: setting.{problems[0]}; {RERUN}")
        if name in compared:
            continue
        metrics_dir = paths.training_tsv(name).parent
        for metric in ("meta_loss", family.val_metric):
            read_table(metrics_dir / f"{metric}.tsv", ("step", metric), sep="\t")
