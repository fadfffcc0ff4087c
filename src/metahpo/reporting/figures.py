"""Figures shared by the regression and classification reports: colours, labels, where figures go, training curves."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from metahpo import paths  # noqa: E402
from metahpo.atomic import atomic_path  # noqa: E402

COLORS = {"tuned": "tab:blue", "default": "tab:orange", "pretrained": "tab:green", "protonet": "tab:purple"}


LABELS = {
    "tuned": "tuned",
    "default": "untuned (params.yaml defaults)",
    "pretrained": "pretrained + fine-tuning",
    "protonet": "prototypical network",
}


FIGURE_FOLDER: contextvars.ContextVar[Path] = contextvars.ContextVar("figure_folder", default=paths.FIGURES)


@contextlib.contextmanager
def figures_into(folder: Path) -> Iterator[None]:
    """Have :func:`save_figure` write into ``folder`` (the report stage's staging folder) for the block."""
    token = FIGURE_FOLDER.set(folder)
    try:
        yield
    finally:
        FIGURE_FOLDER.reset(token)


def save_figure(fig, name: str) -> str:
    """Write ``fig`` as ``<name>`` in the figure folder (no timestamp, so the bytes repeat) and close it."""
    with atomic_path(FIGURE_FOLDER.get() / name) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return name


def training_figure(learners: tuple[str, ...], val_metric: str, loss_name: str, val_title: str) -> str:
    """Meta-training loss and the meta_val metric ``val_metric`` of each learner."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in learners:
        metrics_dir = paths.training_tsv(name).parent
        for ax, metric in zip(axes, ("meta_loss", val_metric)):
            curve = pd.read_csv(metrics_dir / f"{metric}.tsv", sep="\t")
            ax.plot(curve["step"], curve[metric], color=COLORS[name], label=LABELS[name])
    axes[0].set(title=f"training loss ({loss_name})", xlabel="iteration", ylabel=loss_name, yscale="log")
    axes[1].set(title=val_title, xlabel="iteration", yscale="linear" if val_metric == "val_accuracy" else "log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    return save_figure(fig, "training.png")
