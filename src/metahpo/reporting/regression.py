"""The sinusoid regression part of the report: adaptation, K-shot, out-of-distribution and example figures.

Measured numbers come from ``reports/evaluation.json`` and the plot data; published ones from
:mod:`metahpo.reporting.published`, labelled as such.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from metahpo import paths
from metahpo.evaluation.panels import learner_curve
from metahpo.evaluation.task_limit import PHASE_GRID
from metahpo.learners.artifacts import load_learner
from metahpo.params import Params
from metahpo.reporting import published
from metahpo.reporting.figures import COLORS, LABELS, save_figure
from metahpo.reporting.kinds import kinds_section
from metahpo.reporting.tables import PAIRED_TEXT, finetuning_text, paired_table, steps_note, table
from metahpo.tasks.storage import load_split

LEARNERS = ("tuned", "default", "pretrained")
LIMIT = "limit"
LIMIT_LABEL = "task limit: the true family fitted to the K points (not a learner)"

POINT_SET_TITLES = {"grid": "100-point grid", "query": "K random query points"}
EXAMPLE_STEPS = (0, 1, 10)
DIVERGED_NOTE = (
    "*diverged*: on at least one task the error blew up (NaN or infinite, or a mean over 100 times the error "
    "before adapting), so the step has no mean. A rule repeated past the steps it was trained for (Meta-SGD's "
    "learned rates) can do this, and so can a fine-tuning rate chosen on meta_val when tasks lie outside the "
    "training ranges. The curves show where the divergence starts."
)


def _curve(name: str, split: str = "test") -> pd.DataFrame:
    return learner_curve("sinusoid", "adaptation" if split == "test" else split, name)


def _clip_top(ax, points: str, split: str = "test") -> None:
    """Keep a diverging curve from flattening the others: cap the axis at 10x the worst start."""
    ax.set_ylim(top=10 * max(_curve(n, split)[f"{points}_mse"][0] for n in LEARNERS))


def _limit_line(ax, x, values, where: str = "") -> None:
    """The task's limit as a dashed black line, or as a note under the x label when it lies below the (log) axis.

    Call it after the axis labels are set; ``where`` qualifies the label (", grid").
    """
    if min(values) >= ax.get_ylim()[0]:
        ax.plot(x, values, "--", color="black", label=f"{LIMIT_LABEL}{where}")
    else:
        shown = ", ".join(f"{v:.1g}" for v in dict.fromkeys(values))
        ax.set_xlabel(f"{ax.get_xlabel()}\n(task limit{where}: {shown}, below the axis)")


def adaptation_figure() -> str:
    """Held-out MSE vs adaptation steps with 95% CI bands, per learner and set of points."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, points in zip(axes, POINT_SET_TITLES):
        for name in LEARNERS:
            curve = _curve(name)
            mse, ci = curve[f"{points}_mse"], curve[f"{points}_ci95"]
            ax.plot(curve["step"], mse, marker="o", ms=3, color=COLORS[name], label=LABELS[name])
            ax.fill_between(curve["step"], mse - ci, mse + ci, color=COLORS[name], alpha=0.2)
        ax.set(title=f"meta_test MSE on {POINT_SET_TITLES[points]}", xlabel="adaptation steps", yscale="log")
        _clip_top(ax, points)
        limit = _curve(LIMIT)
        _limit_line(ax, limit["step"], list(limit[f"{points}_mse"]))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean MSE over held-out tasks (95% CI)")
    axes[0].legend()
    return save_figure(fig, "adaptation.png")


def kshot_figure() -> str:
    """MSE after one step against K, measured (with 95% CI) and published (hollow markers)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in LEARNERS:
        curve = learner_curve("sinusoid", "kshot", name)
        ax.errorbar(curve["k"], curve["grid_mse"], yerr=curve["grid_ci95"], marker="o", capsize=3,
                    color=COLORS[name], label=f"{LABELS[name]} (measured, grid)")  # fmt: skip
    for method, marker in zip(published.ONE_STEP, ("s", "D")):
        ks = sorted(published.ONE_STEP[method])
        low = np.array([published.ONE_STEP[method][k][0] for k in ks])
        high = np.array([published.ONE_STEP[method][k][1] for k in ks])
        ax.errorbar(ks, (low + high) / 2, yerr=(high - low) / 2, marker=marker, mfc="none", ls=":", color="gray",
                    capsize=3, label=f"{method} (published, {published.SOURCE})")  # fmt: skip
    ax.set(xlabel="support points K", ylabel="MSE after one step", yscale="log", xticks=[5, 10, 20],
           title="K-shot comparison at one adaptation step")  # fmt: skip
    limit = learner_curve("sinusoid", "kshot", LIMIT)
    _limit_line(ax, limit["k"], list(limit["grid_mse"]), ", grid")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, "kshot.png")


def ood_figure() -> str:
    """Grid MSE vs steps on meta_test (solid) and on the out-of-distribution meta_ood (dashed)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in LEARNERS:
        for split, style in (("test", "-"), ("ood", "--")):
            curve = _curve(name, split)
            label = f"{LABELS[name]}, {'in distribution' if split == 'test' else 'out of distribution'}"
            ax.plot(curve["step"], curve["grid_mse"], style, marker="o", ms=3, color=COLORS[name], label=label)
    ax.set(xlabel="adaptation steps", ylabel="mean grid MSE", yscale="log", title="out-of-distribution tasks")
    _clip_top(ax, "grid", "ood")
    limit = _curve(LIMIT, "ood")
    _limit_line(ax, limit["step"], list(limit["grid_mse"]), ", out of distribution")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, "ood.png")


def examples_figure(device: torch.device, shots: int, n_tasks: int = 6) -> str:
    """Held-out tasks: truth, the K support points, and the tuned learner after 0, 1, 10 steps (MAML fig. 2)."""
    test = load_split(paths.TASKS, "meta_test")
    learner = load_learner(paths.MODELS / "tuned", device)
    sx = torch.from_numpy(np.ascontiguousarray(test["support_x"][:n_tasks, :shots])).to(device)
    sy = torch.from_numpy(np.ascontiguousarray(test["support_y"][:n_tasks, :shots])).to(device)
    grid = np.ascontiguousarray(np.broadcast_to(test["grid_x"], (n_tasks, *test["grid_x"].shape)))
    predictions = {}
    for step, fast in enumerate(learner.trajectory(sx, sy, max(EXAMPLE_STEPS))):
        if step in EXAMPLE_STEPS:
            with torch.no_grad():
                outputs = learner.query_outputs(fast, sx, sy, torch.from_numpy(grid).to(device))
                predictions[step] = outputs.squeeze(-1).cpu().numpy()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    x = test["grid_x"][:, 0]
    for i, ax in enumerate(axes.flat):
        ax.plot(x, test["grid_y"][i, :, 0], color="black", lw=2, label="ground truth")
        for step, style in zip(EXAMPLE_STEPS, (":", "--", "-")):
            ax.plot(x, predictions[step][i], style, color="tab:blue", label=f"after {step} steps")
        ax.scatter(test["support_x"][i, :shots, 0], test["support_y"][i, :shots, 0], color="tab:red", zorder=3,
                   label=f"support (K={shots})")  # fmt: skip
        ax.set_title(f"task {i}: A={test['amplitude'][i]:.2f}, phase={test['phase'][i]:.2f}", fontsize=9)
        ax.set_ylim(-1.5 * test["amplitude"][i] - 0.5, 1.5 * test["amplitude"][i] + 0.5)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return save_figure(fig, "examples.png")


def mse_text(mean: float, ci: float, sign: str = "") -> str:
    """``mean ± ci`` with three decimals, two significant digits below 0.01 in size; ``sign="+"`` signs it."""
    return f"{mean:{sign}.1e} ± {ci:.1e}" if abs(mean) < 0.01 else f"{mean:{sign}.3f} ± {ci:.3f}"


def fmt(stat: dict) -> str:
    """``mse ± ci95`` as :func:`mse_text` writes it, or ``diverged``."""
    return "diverged" if stat["mse"] is None else mse_text(stat["mse"], stat["ci95"])


def headline_table(metrics: dict) -> str:
    """meta_test MSE at the headline steps, K = the training K, both query kinds."""
    k = f"k{metrics['protocol']['shots']}"
    steps = sorted(metrics["tuned"]["test"]["grid"][k], key=lambda s: int(s.removeprefix("step")))
    header = ["learner", "inner steps"] + [
        f"{points}, {s.removeprefix('step')} steps" for points in POINT_SET_TITLES for s in steps
    ]
    cells = [(points, s) for points in POINT_SET_TITLES for s in steps]
    rows = [
        [LABELS[n], str(metrics[n]["inner_steps"])] + [fmt(metrics[n]["test"][points][k][s]) for points, s in cells]
        for n in LEARNERS
    ]
    rows.append([LIMIT_LABEL, "none"] + [fmt(metrics[LIMIT]["test"][points][k]) for points, _ in cells])
    return table(header, rows)


def paired_mse_table(metrics: dict) -> str:
    """The tuned learner minus each other row, in grid MSE, on the same tasks."""
    return paired_table(metrics, LEARNERS, (LIMIT, LIMIT_LABEL), "grid", "mse", lambda m, ci: mse_text(m, ci, "+"),
                        higher_is_better=False)  # fmt: skip


def kshot_table(metrics: dict, eval_shots: list[int]) -> str:
    """MSE after one step for each K: measured rows (grid and query), then published reference rows."""
    ks = sorted(eval_shots)
    header = ["learner", "source"] + [f"K={k}" for k in ks]
    rows = [
        [LABELS[n], f"measured, {points}"] + [fmt(metrics[n]["test"][points][f"k{k}"]["step1"]) for k in ks]
        for n in LEARNERS
        for points in POINT_SET_TITLES
    ]
    rows += [[LIMIT_LABEL, f"measured, {points}"] + [fmt(metrics[LIMIT]["test"][points][f"k{k}"]) for k in ks]
             for points in POINT_SET_TITLES]  # fmt: skip
    for method, by_k in published.ONE_STEP.items():
        cells = [published.format_quote(*by_k[k]) if k in by_k else "" for k in ks]
        rows.append([f"{method}", f"**published** ({published.SOURCE})"] + cells)
    return table(header, rows)


def ood_table(metrics: dict, max_steps: int) -> str:
    """Grid MSE in and out of distribution, after one step and after ``max_steps``."""
    k = f"k{metrics['protocol']['shots']}"
    header = ["learner"] + [f"{split}, {s} steps" for split in ("test", "ood") for s in (1, max_steps)]
    cells = [(split, f"step{s}") for split in ("test", "ood") for s in (1, max_steps)]
    rows = [[LABELS[n]] + [fmt(metrics[n][split]["grid"][k][s]) for split, s in cells] for n in LEARNERS]
    rows.append([LIMIT_LABEL] + [fmt(metrics[LIMIT][split]["grid"][k]) for split, _ in cells])
    return table(header, rows)


def figures(params: Params, device: torch.device) -> dict[str, str]:
    """Draw the regression figures; return their file names by key."""
    return {
        "adaptation": adaptation_figure(),
        "kshot": kshot_figure(),
        "ood": ood_figure(),
        "examples": examples_figure(device, params.tasks.shots),
    }


def settings_text(params: Params) -> str:
    """The task distribution and split sizes."""
    tasks = params.tasks
    return f"""\
Sinusoid regression y = A·sin(x − φ): A ∈ {tasks.amplitude}, φ ∈ [{tasks.phase[0]:.3f}, {tasks.phase[1]:.3f}],
x ∈ {tasks.x_range}; K = {tasks.shots} support and {tasks.query} query points per held-out task (meta-training
draws `query` of the setting below); meta_train
{tasks.splits["meta_train"]} tasks, meta_val {tasks.splits["meta_val"]}, meta_test {tasks.splits["meta_test"]},
meta_ood {tasks.splits["meta_ood"]} (A ∈ {tasks.ood.amplitude},
φ ∈ [{tasks.ood.phase[0]:.3f}, {tasks.ood.phase[1]:.3f}])."""


def results_text(params: Params, metrics: dict, figures: dict) -> str:
    """Protocol, headline table, K-shot comparison and out-of-distribution results."""
    tasks, evaluate = params.tasks, params.evaluate
    tables = headline_table(metrics) + kshot_table(metrics, tasks.eval_shots) + ood_table(metrics, evaluate.max_steps)
    return f"""\
Protocol: {metrics["protocol"]["tasks"]} meta_test tasks; each learner adapts on K support points with its own
inner rule; mean MSE ± 95% CI (1.96·std/√n) on K random query points and on a 100-point grid over the input
range. {finetuning_text()}

The last row, the **task limit**, is no learner: it fits y = A·sin(x − φ), the family the tasks are drawn from, to
each task's K support points by least squares (A and φ within the ranges of the task's split; a grid of
{PHASE_GRID:,} phases with the best amplitude in closed form for each, then a golden-section refinement) and is
scored on the same points with the same CIs. It takes no steps: every step column shows its one value, and the
figures draw it as a flat dashed line, or name it in a note when it lies below a logarithmic axis. The tasks carry no
noise, so two or more points determine a task and the limit is zero up to rounding: the whole distance between a
learner and this row is the learner's.

{headline_table(metrics)}
{steps_note()}
![adaptation curves](figures/{figures["adaptation"]})

*meta_test MSE against adaptation steps, 95% CI shaded.*

{PAIRED_TEXT}

{paired_mse_table(metrics)}

### K-shot comparison at one step
Learners trained at K = {tasks.shots} adapt on the first K support points of each meta_test task. Published
rows use their source's protocol ({published.PROTOCOL}).

{kshot_table(metrics, tasks.eval_shots)}

![K-shot comparison](figures/{figures["kshot"]})

*MSE after one step against K: measured (grid, 95% CI) and published (hollow markers, ranges where sources differ).*

### Out of distribution
meta_ood tasks have amplitudes and phases outside the training ranges; grid MSE, K = {tasks.shots}.

{ood_table(metrics, evaluate.max_steps)}

![out of distribution](figures/{figures["ood"]})

*Grid MSE against adaptation steps, in distribution (solid) and out of distribution (dashed).*

{DIVERGED_NOTE if "diverged" in tables else ""}"""


def kinds_text(params: Params, metrics: dict) -> str:
    """The kinds of meta-learner side by side (:mod:`metahpo.reporting.kinds`)."""
    return kinds_section(params, metrics, fmt, "grid MSE", "grid", higher_is_better=False)


def examples_text(figures: dict) -> str:
    """The example-tasks figure and its caption."""
    return f"""![example tasks](figures/{figures["examples"]})

*Six meta_test tasks: ground truth, the K support points, and the tuned learner before and after 1 and 10 steps.*"""
