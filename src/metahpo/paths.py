"""Where each stage reads and writes, relative to the project root (mirrors dvc.yaml)."""

from pathlib import Path

from metahpo.config import is_classification

TASKS = Path("data/tasks")
SEARCH = Path("reports/search")
TRIALS = SEARCH / "trials.csv"
BEST = SEARCH / "best.json"
MODELS = Path("models")
TRAIN_LOGS = Path("reports/train")
METRICS = Path("reports/metrics.json")
PLOTS = Path("reports/plots")
FIGURES = Path("reports/figures")
REPORT = Path("reports/report.md")

LEARNERS = ("tuned", "default", "pretrained")
CLASSIFICATION_LEARNERS = ("tuned", "default", "protonet")


def learners(tasks: dict) -> tuple[str, ...]:
    """The learners trained and evaluated for a task family: the baselines differ by problem type."""
    return CLASSIFICATION_LEARNERS if is_classification(tasks) else LEARNERS


def adaptation_csv(learner: str, split: str = "test") -> Path:
    """Per-step adaptation curve of one learner on meta_test (or ``ood``: meta_ood) (DVC plot data)."""
    return PLOTS / f"{'adaptation' if split == 'test' else split}_{learner}.csv"


def kshot_csv(learner: str) -> Path:
    """MSE after one step against the number of support points K, for one learner (DVC plot data)."""
    return PLOTS / f"kshot_{learner}.csv"


def accuracy_csv(learner: str) -> Path:
    """Per-step meta_test accuracy of one learner (classification; DVC plot data)."""
    return PLOTS / f"accuracy_{learner}.csv"


def kshot_accuracy_csv(learner: str) -> Path:
    """Accuracy after one step against K support images per class (classification; DVC plot data)."""
    return PLOTS / f"kshot_accuracy_{learner}.csv"


def training_tsv(learner: str) -> Path:
    """DVCLive's meta-loss history of one learner."""
    return TRAIN_LOGS / learner / "plots" / "metrics" / "meta_loss.tsv"
