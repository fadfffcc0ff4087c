"""Plot data as DVC panels: one CSV per panel, every learner's rows in it, in a folder per task family.

``reports/plots/<tasks.family>/by_step/<split>_<metric>.csv`` holds the curves against adaptation steps
and ``by_shots/`` the values after one step against K; each has the columns ``learner``, ``step`` (or
``k``), ``mean`` and ``ci95``. ``dvc.yaml`` shows the two folders of the family in params.yaml
(``${tasks.family}``), so a run never shows the other family's empty panels, and its templates
(``.dvc/plots/``) give every learner its own colour. A step where adaptation diverged (``null`` in the
metrics: see :mod:`metahpo.evaluation.regression`) is written as missing, never as 1e24, and the
template marks it. The report reads the same files back per learner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metahpo import paths

# panel of plot data -> (folder, split, x column)
PANELS = {
    "adaptation": ("by_step", "meta_test", "step"),
    "ood": ("by_step", "meta_ood", "step"),
    "kshot": ("by_shots", "meta_test", "k"),
    "accuracy": ("by_step", "meta_test", "step"),
    "kshot_accuracy": ("by_shots", "meta_test", "k"),
}


def metric_columns(columns) -> dict[str, tuple[str, str]]:
    """``{metric: (mean column, CI column)}`` of one learner's plot data (``grid_mse``, ``accuracy``, ...)."""
    if "accuracy" in columns:
        return {"accuracy": ("accuracy", "ci95")}
    return {c: (c, c.removesuffix("_mse") + "_ci95") for c in columns if c.endswith("_mse")}


def panel_path(family: str, panel: str, metric: str, folder: Path = paths.PLOTS) -> Path:
    """The panel file of ``metric`` for plot data ``panel`` of ``family``."""
    where, split, _ = PANELS[panel]
    return folder / family / where / f"{split}_{metric}.csv"


def panel_tables(family: str, plots_by_learner: dict[str, dict], folder: Path) -> dict[Path, pd.DataFrame]:
    """Every panel of ``{learner: {panel: columns}}``, learners stacked in order; a diverged step (null) is missing."""
    tables: dict[Path, list[pd.DataFrame]] = {}
    for learner, plots in plots_by_learner.items():
        for panel, columns in plots.items():
            x = PANELS[panel][2]
            for metric, (mean_col, ci_col) in metric_columns(columns).items():
                rows = pd.DataFrame({
                    "learner": learner,
                    x: np.asarray(columns[x]),
                    "mean": np.array(columns[mean_col], dtype=float),
                    "ci95": np.array(columns[ci_col], dtype=float),
                })  # fmt: skip
                tables.setdefault(panel_path(family, panel, metric, folder), []).append(rows)
    return {path: pd.concat(parts, ignore_index=True) for path, parts in tables.items()}


def learner_curve(family: str, panel: str, learner: str, plots: Path = paths.PLOTS) -> pd.DataFrame:
    """One learner's plot data ``panel`` read back from the panels under ``plots``, in evaluate's columns."""
    folder, split, x = PANELS[panel]
    out: pd.DataFrame | None = None
    for path in sorted((plots / family / folder).glob(f"{split}_*.csv")):
        metric = path.stem.removeprefix(f"{split}_")
        mean_col, ci_col = metric_columns([metric])[metric]
        table = pd.read_csv(path)
        rows = table[table["learner"] == learner].reset_index(drop=True)
        part = pd.DataFrame({x: rows[x], mean_col: rows["mean"], ci_col: rows["ci95"]})
        out = part if out is None else out.merge(part, on=x)
    return out if out is not None else pd.DataFrame()
