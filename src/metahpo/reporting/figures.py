"""Figures and tables shared by the regression and classification reports."""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import platform
import statistics
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import skopt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from skopt.plots import plot_evaluations, plot_objective  # noqa: E402

from metahpo import __version__, paths  # noqa: E402
from metahpo.atomic import atomic_path  # noqa: E402
from metahpo.learners import LEARNED_RULE_ALGORITHMS, USED_ONLY_BY  # noqa: E402
from metahpo.learners.cost import setting_macs  # noqa: E402
from metahpo.learners.settings import default_setting  # noqa: E402
from metahpo.params import Params, SearchParams  # noqa: E402
from metahpo.search.proposers import build_space  # noqa: E402
from metahpo.search.rungs import reached, rung_iterations  # noqa: E402
from metahpo.search.trial_log import SMALLEST_TOLD  # noqa: E402

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


# How trials without a full-length objective are drawn: status, colour, marker.
UNFINISHED = (("stopped", "tab:purple", "v"), ("failed", "tab:red", "x"), ("too_costly", "tab:gray", "X"))


def pareto_front(costs: list[float], values: list[float]) -> list[int]:
    """Indices of the points no other point beats in both cost and value (lower is better), by rising cost."""
    front, best = [], math.inf
    for i in sorted(range(len(costs)), key=lambda i: (costs[i], values[i], i)):
        if values[i] < best:
            front.append(i)
            best = values[i]
    return front


def cost_figure(trials: pd.DataFrame, objective: str, best_trial: int, baseline: int, max_cost: float | None) -> str:
    """Objective against estimated cost per meta-iteration for every trial, the Pareto front of the finished ones."""
    relative = trials["cost_macs"] / baseline
    ok = trials["status"] == "ok"
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(relative[ok], trials.loc[ok, "objective"], color="tab:blue", label="finished trial")
    for status, color, marker in UNFINISHED:
        rows = trials["status"] == status
        if rows.any():
            ax.scatter(relative[rows], np.exp(trials.loc[rows, "told"]), color=color, marker=marker,
                       label=f"{status.replace('_', ' ')} (as told)")  # fmt: skip
    front = pareto_front(list(relative[ok]), list(trials.loc[ok, "objective"]))
    if front:
        x, y = relative[ok].to_numpy()[front], trials.loc[ok, "objective"].to_numpy()[front]
        ax.plot(x, y, drawstyle="steps-post", marker="o", markersize=11, markerfacecolor="none", color="black",
                label="Pareto front (finished trials)")  # fmt: skip
    chosen = trials["trial"] == best_trial
    ax.scatter(relative[chosen], trials.loc[chosen, "objective"], marker="*", s=200, color="tab:red", label="chosen")
    ax.axvline(1.0, color="tab:orange", linestyle=":", label="untuned setting's cost")
    if max_cost is not None:
        ax.axvline(max_cost, color="tab:gray", linestyle="--", label=f"search.max_cost ({max_cost:g}x)")
    ax.set(xlabel="estimated cost per meta-iteration (x the untuned setting's)", ylabel=objective, xscale="log",
           yscale="log", title="objective against cost")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, "cost.png")


def search_figure(trials: pd.DataFrame, objective: str) -> str:
    """Objective of each trial and the best value so far."""
    ok = trials["status"] == "ok"
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(trials.loc[ok, "trial"], trials.loc[ok, "objective"], color="tab:blue", label="finished trial")
    for status, color, marker in UNFINISHED:
        rows = trials["status"] == status
        if rows.any():
            ax.scatter(trials.loc[rows, "trial"], np.exp(trials.loc[rows, "told"]), color=color, marker=marker,
                       label=f"{status.replace('_', ' ')} (as told)")  # fmt: skip
    ax.step(trials["trial"], trials["best_so_far"], where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel=objective, yscale="log", title="search convergence")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, "search.png")


def surrogate_data(trials: pd.DataFrame, search: SearchParams) -> tuple[list[list], list[float], str]:
    """Points and told values the report's GP is fitted to, and which trials they are, in words.

    A single-fidelity search: every trial as told (log objective, penalties included). A multi-fidelity
    one: the trials of the highest rung that at least dimensions + 1 trials reached, as the search's own
    surrogate is fitted, since values of different rungs are not comparable.
    """
    names = list(search.space)
    rows = {
        int(r.trial): {"point": json.loads(r.point), "rungs": json.loads(r.rungs), "status": r.status,
                       "iterations": int(r.iterations), "told": float(r.told)}
        for r in trials.itertuples()
    }  # fmt: skip
    chosen, note, iterations = sorted(rows), "all trials", None
    if search.fidelity != "none":
        for iterations in reversed(rung_iterations(search.iterations, search.min_iterations, search.eta)):
            chosen = [t for t in sorted(rows) if reached(rows[t], iterations)]
            if len(chosen) >= len(names) + 1:
                break
        enough = len(names) + 1
        where = f"the highest rung that at least {enough} reached" if len(chosen) >= enough else "the first rung"
        note = f"the {len(chosen)} trials that reached {iterations:,} iterations, {where}"
    values = []
    for t in chosen:
        rung = rows[t]["rungs"].get(str(iterations)) if iterations else None
        values.append(math.log(max(statistics.fmean(rung), SMALLEST_TOLD)) if rung else rows[t]["told"])
    return [[rows[t]["point"][n] for n in names] for t in chosen], values, note


def surrogate_result(trials: pd.DataFrame, search: SearchParams, seed: int):
    """A GP fitted to :func:`surrogate_data`, for skopt's plots."""
    points, values, _ = surrogate_data(trials, search)
    optimizer = skopt.Optimizer(
        build_space(search.space), base_estimator="GP", n_initial_points=1, acq_optimizer="sampling",
        random_state=seed,
    )  # fmt: skip
    optimizer.tell(points, values)
    return optimizer.get_result()


def legible_axes(fig, space: dict) -> None:
    """Tidy skopt's grid of axes: slanted category names that do not overlap, whole numbers on integer axes.

    The axis in row ``i`` and column ``j`` of skopt's grid (found from its position) shows dimension
    ``j`` along x and, off the diagonal, dimension ``i`` along y.
    """
    kinds = [dim["type"] for dim in space.values()]
    shown = [ax for ax in fig.axes if ax.get_visible()]
    columns = sorted({round(ax.get_position().x0, 3) for ax in shown})
    rows = sorted({round(ax.get_position().y0, 3) for ax in shown}, reverse=True)
    for ax in shown:
        j, i = columns.index(round(ax.get_position().x0, 3)), rows.index(round(ax.get_position().y0, 3))
        if kinds[j] == "integer":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        if kinds[i] == "integer" and i != j:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        if kinds[j] == "categorical":
            for label in ax.get_xticklabels():
                label.set(rotation=40, fontsize=8, ha="left" if i == j else "right")


def surrogate_figures(trials: pd.DataFrame, search: SearchParams, seed: int) -> tuple[str, str]:
    """skopt's partial dependence (``plot_objective``) and sampled points (``plot_evaluations``)."""
    result = surrogate_result(trials, search, seed)
    np.random.seed(seed)  # plot_objective samples the space with numpy's global generator
    plot_objective(result, n_points=20, n_samples=200)
    legible_axes(plt.gcf(), search.space)
    objective = save_figure(plt.gcf(), "objective.png")
    plot_evaluations(result)
    legible_axes(plt.gcf(), search.space)
    return objective, save_figure(plt.gcf(), "evaluations.png")


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


def finetuning_text() -> str:
    """How the pretrained network fine-tunes, and how that was chosen, from its config (a sentence)."""
    record = json.loads((paths.MODELS / "pretrained" / "config.json").read_text(encoding="utf-8"))["finetuning"]
    grid = record["grid"]
    rates, steps, rules = grid["inner_lr"], grid["inner_steps"], len(grid["val_score"])
    choice = f"{rules} rules (which weights adapt) × " if rules > 1 else ""
    seen = [n for row in grid.get("episodes", {}).values() for n in row]
    raced = (
        f", raced by successive halving over the meta_val episodes (the winner scored on all {max(seen)}, "
        f"the first arms dropped after {min(seen)})"
        if seen and min(seen) < max(seen)
        else ""
    )
    return (
        f"The pretrained network fine-tunes {record['adapts']} by SGD at its own rate, {record['inner_lr']:.4g}, "
        f"for {record['inner_steps']} steps: the lowest {record['score']}, {record['val_score']:.3f}, of {choice}"
        f"{len(rates)} log-spaced rates from {rates[0]:.4g} to {rates[-1]:.4g} × 1 to {steps[-1]} steps "
        f"(`train.finetune`){raced}; meta_test took no part in the choice."
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def trained_settings(learners: tuple[str, ...]) -> dict[str, dict]:
    """The setting each of ``learners`` was trained with, from its model config."""
    return {n: json.loads((paths.MODELS / n / "config.json").read_text())["setting"] for n in learners}


def _setting_cell(setting: dict, key: str) -> str:
    """A value, marked where the setting's algorithm does not read it (the search pins such values)."""
    unread = setting["algorithm"] not in USED_ONLY_BY.get(key, (setting["algorithm"],))
    return f"{setting[key]} (not read by {setting['algorithm']})" if unread else str(setting[key])


def setting_table(learners: tuple[str, ...] = ("tuned", "default")) -> str:
    """The tuned and untuned meta-hyperparameters side by side, from the trained models' configs."""
    configs = trained_settings(learners)
    rows = [[k, *(_setting_cell(configs[n], k) for n in ("tuned", "default"))] for k in configs["tuned"]]
    return table(["meta-hyperparameter", "tuned", "untuned"], rows)


def steps_note(learners: tuple[str, ...] = ("tuned", "default")) -> str:
    """What the step columns mean for a CNP or a learned rule among ``learners`` (empty for the others)."""
    notes = []
    for name, setting in trained_settings(learners).items():
        if setting["algorithm"] == "cnp":
            notes.append(
                f"The {LABELS[name]} learner is a CNP: it adapts by conditioning on the support set, with no inner "
                "step, so it is scored at 0 steps and every step column repeats that score."
            )
        elif setting["algorithm"] in LEARNED_RULE_ALGORITHMS:
            notes.append(rule_note(LABELS[name], setting))
    return "\n" + " ".join(notes) + "\n" if notes else ""


def rule_note(label: str, setting: dict) -> str:
    """What the steps past a learned rule's trained ones mean, for the learner ``label`` trained with ``setting``."""
    return (
        f"The {label} learner's update rule was meta-trained for {setting['inner_steps']} inner "
        "steps; later steps feed it a step fraction above 1, which it never saw in training."
    )


def search_options(search: SearchParams, trials: pd.DataFrame) -> str:
    """The report's sentences on rungs, repeats, class folds and the default start, when they are used."""
    parts = []
    if search.fidelity != "none":
        rungs = rung_iterations(search.iterations, search.min_iterations, search.eta)
        reached = int((trials["iterations"] == search.iterations).sum())
        parts.append(
            f"Multi-fidelity ({search.fidelity.replace('_', ' ')}): trials train in rungs of "
            f"{', '.join(f'{r:,}' for r in rungs)} iterations; after each rung the best 1/{search.eta} of a "
            f"bracket continue training where they stopped, the others stop there ({reached} of the {len(trials)} "
            f"trials reached {search.iterations:,} iterations; "
            f"{int(trials.loc[trials['status'] != 'too_costly', 'iterations'].sum()):,} trial-iterations in all)."
        )
        if search.fidelity_unit == "compute":
            parts.append(
                "Rungs are measured in compute: a rung of n iterations gives each trial the multiply-adds of n "
                "iterations of the untuned setting, so a cheaper setting trains more iterations and a costlier one "
                "fewer (the iterations above are in untuned-setting iterations)."
            )
    if search.repeats > 1:
        parts.append(f"Each trial's objective is the mean over {search.repeats} training seeds.")
    if search.class_folds > 1:
        parts.append(
            f"The objective is the mean over {search.class_folds} class folds: meta_val, then groups of whole "
            "meta_train source classes with their rotations, each at least as large as meta_val, held out in turn "
            "(each trained on the other meta_train classes and the meta_val classes)."
        )
    if search.start_from_default:
        parts.append("Trial 0 is the untuned setting.")
    return " ".join(parts) + "\n" if parts else ""


def cost_text(params: Params, best: dict, trials: pd.DataFrame) -> str:
    """The chosen setting's estimated cost per meta-iteration beside the untuned baseline's, and the cap."""
    baseline = setting_macs(default_setting(params), params)
    chosen = int(trials.loc[trials["trial"] == best["trial"], "cost_macs"].iloc[0])
    text = (
        f"Estimated cost per meta-iteration (multiply-adds, `metahpo.learners.cost`): chosen setting "
        f"{chosen / 1e6:,.2f} M, untuned baseline {baseline / 1e6:,.2f} M ({chosen / baseline:.2f}x)."
    )
    cap = params.search.max_cost
    if cap is not None:
        refused = int((trials["status"] == "too_costly").sum())
        text += (
            f" Settings above {cap:g}x the baseline's cost (`search.max_cost`) were not trained: {refused} of "
            f"{len(trials)} trials, told the optimizer a failure's penalty."
        )
    return text


def search_section(params: Params, best: dict, trials: pd.DataFrame, figures: dict, objective: str) -> str:
    """The report's search section: what ran, the best trial, the settings, its cost and the search figures."""
    search = params.search
    counts = trials["status"].value_counts()
    trial = "full trial" if search.fidelity != "none" else "trial"
    too_costly = f", {counts['too_costly']} too costly" if counts.get("too_costly", 0) else ""
    return f"""## Search
{search.method} search, {len(trials)} trials ({counts.get("ok", 0)} finished,
{counts.get("stopped", 0)} stopped early, {counts.get("failed", 0)} failed{too_costly}),
{search.iterations} iterations per {trial},
objective: {objective} after {search.objective_steps} adaptation step(s), never meta_test.
{search_options(search, trials)}Best: trial {best["trial"]}, {objective} {best["objective"]:.4f}.

{setting_table()}

{cost_text(params, best, trials)}

![objective against cost](figures/{figures["cost"]})

*Objective of every trial against its estimated cost per meta-iteration, relative to the untuned setting's
(failed, stopped and too costly trials at the value told to the optimizer); the line is the Pareto front of
the finished trials, the star the chosen setting.*

![search convergence](figures/{figures["search"]})

*Objective of every trial (failed and stopped trials at the value told to the optimizer) and the best so far.*

![partial dependence](figures/{figures["objective"]})

*Partial dependence of log({objective}) on each meta-hyperparameter and pair, from a GP fitted to
{surrogate_data(trials, search)[2]} (red star: the best of them).*

![evaluations](figures/{figures["evaluations"]})

*Where the search sampled: histograms per meta-hyperparameter and pairwise scatter, in trial order.*
"""


def environment_section(params: Params, device: torch.device) -> str:
    """Library versions, device and threads: what can change the last digits."""
    return f"""## Environment
metahpo {__version__}, Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__},
scikit-optimize {skopt.__version__}; device {device.type}, {params.threads} torch thread(s) per process. Another
device, thread count or library version can change the numbers in the last digits.
"""
