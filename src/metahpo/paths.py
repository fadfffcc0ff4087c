"""Where each stage reads and writes, relative to the project root (mirrors dvc.yaml)."""

from pathlib import Path

TASKS = Path("data/tasks")
SEARCH = Path("reports/search")
TRIALS = SEARCH / "trials.csv"
TRIAL_SECONDS = SEARCH / "trial_seconds.csv"  # wall-clock seconds of each trial (not byte-identical)
BEST = SEARCH / "best.json"
CHECKPOINTS = Path("cache/search")  # states of a multi-fidelity search's unfinished trials (git-ignored)
MODELS = Path("models")
TRAIN_LOGS = Path("reports/train")
KINDS = "kinds.json"  # in MODELS: which learner stands for each kind of meta-learner the search tried
TIMING = "timing.json"  # in TRAIN_LOGS: predicted and measured seconds of the final training (not byte-identical)
METRICS = Path("reports/metrics.json")  # the headline means (DVC metrics)
METRICS_CI = Path("reports/metrics_ci95.json")  # their 95% CI half-widths, as <key>_ci95 (DVC metrics)
EVALUATION = Path("reports/evaluation.json")  # every per-step number, read by the report
PLOTS = Path("reports/plots")
FIGURES = Path("reports/figures")
REPORT = Path("reports/report.md")


def training_tsv(learner: str) -> Path:
    """DVCLive's meta-loss history of one learner."""
    return TRAIN_LOGS / learner / "plots" / "metrics" / "meta_loss.tsv"


def inside(folder: Path, name: object, source: Path, key: str) -> Path:
    """``folder / name`` for a ``name`` read from the file ``source`` (at ``key``), refused unless it stays inside.

    A name is one plain entry of ``folder``: not absolute, no ``..``, no separator, and where it already
    exists, it resolves (symlinks followed) inside ``folder``. Raises :class:`metahpo.errors.ArtifactError`.
    """
    from metahpo.errors import ArtifactError

    plain = isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
    path = Path(folder) / name if plain else None
    if (
        path is not None
        and "\0" not in name
        and (not path.exists() or path.resolve().is_relative_to(Path(folder).resolve()))
    ):
        return path
    raise ArtifactError(f"{source}: {key}: {name!r} is not an entry of {folder}/; rerun the stage that wrote it")
