"""A finished run's results, read back from a project folder for a notebook: :func:`load_run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from metahpo import paths
from metahpo.errors import ArtifactError, first_line
from metahpo.json_files import load_json_object

RERUN = "rerun the stage that writes it (dvc repro)"


@dataclass(frozen=True)
class Run:
    """What a pipeline run wrote, each part ``None`` where its stage has not run.

    Attributes:
        trials: the search's trial log (``reports/search/trials.csv``), one row per trial: a column per
            searched meta-hyperparameter, then status, objective, what the optimizer was told, best so far,
            iterations, estimated cost, rungs, seed and error.
        best: the best trial (``reports/search/best.json``): ``trial``, ``objective``, ``point`` (the searched
            values) and ``setting`` (every tunable value).
        metrics: the headline metrics of every learner (``reports/metrics.json``, DVC's metrics).
        evaluation: every per-step number of the held-out evaluation (``reports/evaluation.json``).
    """

    trials: pd.DataFrame | None
    best: dict | None
    metrics: dict | None
    evaluation: dict | None


def _json(path: Path) -> dict | None:
    return load_json_object(path, ArtifactError, RERUN) if path.exists() else None


def load_run(project: str | Path = ".") -> Run:
    """The results of the run in the project folder ``project`` (its ``reports/``), read without changing them.

    A part whose file is absent is ``None`` (the stage has not run); a malformed file is an
    :class:`~metahpo.errors.ArtifactError` naming it, as is a folder with no results at all.

    Example (the run committed with this project):
        >>> from pathlib import Path
        >>> import metahpo
        >>> run = metahpo.load_run(Path(metahpo.__file__).resolve().parents[2])
        >>> run.trials.columns[0], run.best["trial"] in set(run.trials["trial"])
        ('trial', True)
        >>> best = run.trials.set_index("trial").loc[run.best["trial"]]  # the best trial's row of the log
        >>> (best["status"], float(best["objective"]) == run.best["objective"])
        ('ok', True)
        >>> "tuned" in run.metrics and "protocol" in run.evaluation
        True
    """
    root = Path(project)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a folder (expected a project folder holding reports/)")
    trials = None
    if (root / paths.TRIALS).exists():
        try:
            trials = pd.read_csv(root / paths.TRIALS)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            raise ArtifactError(f"{root / paths.TRIALS}: not a readable table ({first_line(exc)}); {RERUN}") from None
    run = Run(trials, _json(root / paths.BEST), _json(root / paths.METRICS), _json(root / paths.EVALUATION))
    if all(part is None for part in (run.trials, run.best, run.metrics, run.evaluation)):
        raise ArtifactError(f"{root}: no run results ({paths.TRIALS}, {paths.BEST}, {paths.METRICS} are all missing)")
    return run
