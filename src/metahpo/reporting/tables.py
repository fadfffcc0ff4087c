"""Markdown tables of the report and the notes under them: the trained settings, steps, fine-tuning."""

from __future__ import annotations

from metahpo import paths
from metahpo.errors import ArtifactError
from metahpo.evaluation.headline import trained_cell
from metahpo.json_files import load_json_object
from metahpo.learners import USED_ONLY_BY
from metahpo.learners.algorithms.registry import algorithm
from metahpo.reporting.figures import LABELS


def finetuning_text() -> str:
    """How the pretrained network fine-tunes, and how that was chosen, from its config (a sentence)."""
    record = _config("pretrained")["finetuning"]
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
    return {n: _config(n)["setting"] for n in learners}


def _config(name: str) -> dict:
    """A model's config (the report's inputs check each one before anything is drawn)."""
    return load_json_object(paths.MODELS / name / "config.json", ArtifactError, "rerun the train stage")


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
        entry = algorithm(setting["algorithm"])
        if not entry.takes_steps:
            notes.append(
                f"The {LABELS[name]} learner is a {entry.label}: it adapts by {entry.adapts_by}, with no inner "
                "step, so it is scored at 0 steps and every step column repeats that score."
            )
        elif entry.learned_rule:
            notes.append(rule_note(LABELS[name], setting))
    return "\n" + " ".join(notes) + "\n" if notes else ""


def rule_note(label: str, setting: dict) -> str:
    """What the steps past a learned rule's trained ones mean, for the learner ``label`` trained with ``setting``."""
    return (
        f"The {label} learner's update rule was meta-trained for {setting['inner_steps']} inner "
        "steps; later steps feed it a step fraction above 1, which it never saw in training."
    )


def headline_stat(metrics: dict, name: str, points: str, value: str) -> tuple[float, float] | None:
    """``(mean, ci95)`` of a row's headline cell (:func:`trained_cell`), or None where it has no value."""
    stat = trained_cell(metrics[name], points, metrics["protocol"]["shots"])
    return None if stat is None or stat[value] is None else (stat[value], stat["ci95"])


def paired_table(
    metrics: dict, learners: tuple[str, ...], reference: tuple[str, str], points: str, value: str, cell,
    higher_is_better: bool,
) -> str:  # fmt: skip
    """The tuned learner minus each other of ``learners`` and the ``(name, label)`` reference row, with a verdict.

    The differences are ``metrics["paired"]``; ``cell(mean, ci95)`` formats one, of ``value`` on ``points``.
    A verdict needs the paired CI to exclude zero; whether the rows' own CIs overlap is shown beside it.
    """
    labels = {**{name: LABELS[name] for name in learners if name != "tuned"}, reference[0]: reference[1]}
    tuned = headline_stat(metrics, "tuned", points, value)
    rows = []
    for name, label in labels.items():
        diff, mine = metrics["paired"][name], headline_stat(metrics, name, points, value)
        overlap = (
            "" if tuned is None or mine is None else "yes" if abs(tuned[0] - mine[0]) <= tuned[1] + mine[1] else "no"
        )
        if diff["mean"] is None:
            rows.append([label, NOT_PAIRED, overlap, "", ""])
            continue
        mean, ci = diff["mean"], diff["ci95"]
        better, worse = (diff["larger"], diff["smaller"]) if higher_is_better else (diff["smaller"], diff["larger"])
        if better == worse == 0:
            verdict = "identical on every task"
        elif mean - ci > 0 or mean + ci < 0:
            verdict = "**tuned better**" if (mean > 0) == higher_is_better else "**tuned worse**"
        else:
            verdict = "not separated (the CI holds 0)"
        rows.append([label, cell(mean, ci), overlap, f"{better} / {worse}", verdict])
    header = ["tuned minus", "mean ± 95% CI", "own CIs overlap", "tasks tuned better / worse", "verdict"]
    return table(header, rows)


NOT_PAIRED = "not measured (a diverged step, trained steps past evaluate.max_steps, or fewer than 2 tasks)"

PAIRED_TEXT = """\
**Paired on the same tasks.** Every row is scored on the same held-out tasks, so each own CI above also carries
how hard the tasks are for all of them. The table takes the tuned learner's value minus the other row's task by
task, at the headline setting (K = the training K, after each learner's trained steps), with the 95% CI of those
differences (1.96·std/√n): a verdict needs that CI to exclude zero. Each row is one such test at 95%; with
several rows, one may separate by chance."""
