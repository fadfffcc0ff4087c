"""The search's figures: objective by trial, cost against objective, and the GP surrogate's plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from skopt.plots import plot_evaluations, plot_objective  # noqa: E402

from metahpo.params import SearchParams  # noqa: E402
from metahpo.reporting.figures import save_figure  # noqa: E402  (figures picks the Agg backend)
from metahpo.reporting.pareto import pareto_front  # noqa: E402
from metahpo.reporting.surrogate import surrogate_result  # noqa: E402

# How trials without a full-length objective are drawn: status, colour, marker.
UNFINISHED = (("stopped", "tab:purple", "v"), ("failed", "tab:red", "x"), ("too_costly", "tab:gray", "X"))


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
