"""The classification part of the report (``digits``, ``image_folder``): accuracy curves, example episodes, tables."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from metahpo import paths
from metahpo.evaluation.panels import learner_curve
from metahpo.learners.artifacts import load_learner
from metahpo.params import Params
from metahpo.reporting import published
from metahpo.reporting.figures import COLORS, LABELS, save_figure
from metahpo.reporting.kinds import kinds_section
from metahpo.reporting.tables import PAIRED_TEXT, finetuning_text, paired_table, steps_note, table
from metahpo.tasks.episodes import episode_arrays, select_episodes
from metahpo.tasks.storage import load_manifest, load_split

LEARNERS = ("tuned", "default", "protonet", "pretrained")
FLOOR = "floor"
FLOOR_LABEL = "task floor: nearest class mean on raw pixels (not a learner)"

EXAMPLE_EPISODES = 3


def accuracy_figure(learners: tuple[str, ...], ways: int, family: str) -> str:
    """meta_test accuracy against adaptation steps with 95% CI bands (chance level dotted)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in learners:
        curve = learner_curve(family, "accuracy", name)
        acc, ci = curve["accuracy"], curve["ci95"]
        ax.plot(curve["step"], acc, marker="o", ms=3, color=COLORS[name], label=LABELS[name])
        ax.fill_between(curve["step"], acc - ci, acc + ci, color=COLORS[name], alpha=0.2)
    floor = learner_curve(family, "accuracy", FLOOR)
    ax.plot(floor["step"], floor["accuracy"], "--", color="black", label=FLOOR_LABEL)
    ax.axhline(1 / ways, ls=":", color="gray", label=f"chance (1/{ways})")
    ax.set(xlabel="adaptation steps", ylabel="meta_test query accuracy (95% CI)", ylim=(0, 1),
           title="accuracy on held-out classes vs adaptation steps")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, "accuracy.png")


def episodes_figure(device: torch.device, shots: int, n_episodes: int = EXAMPLE_EPISODES) -> str:
    """Example meta_test episodes: one support image per class, and one query per class with the tuned prediction."""
    test = load_split(paths.TASKS, "meta_test")
    arrays = episode_arrays(select_episodes(test, slice(0, n_episodes)), shots)
    support_x, support_y, query_x, query_y = (torch.from_numpy(a).to(device) for a in arrays)
    learner = load_learner(paths.MODELS / "tuned", device)
    *_, fast = learner.trajectory(support_x, support_y, learner.config.inner_steps)
    with torch.no_grad():
        predicted = learner.query_outputs(fast, support_x, support_y, query_x).argmax(-1).cpu().numpy()
    ways, per_class = test["support_index"].shape[1], test["query_index"].shape[2]
    fig, axes = plt.subplots(2 * n_episodes, ways, figsize=(1.6 * ways, 3.4 * n_episodes), squeeze=False)
    for e in range(n_episodes):
        for j in range(ways):
            top, bottom = axes[2 * e, j], axes[2 * e + 1, j]
            top.imshow(support_x[e, j * shots].cpu().numpy(), cmap="gray_r")
            top.set_title(f"episode {e}: class {j}" if j == 0 else f"class {j}", fontsize=8)
            q = j * per_class
            right = predicted[e, q] == query_y[e, q].item()
            bottom.imshow(query_x[e, q].cpu().numpy(), cmap="gray_r")
            bottom.set_title(f"query: predicted {predicted[e, q]}", fontsize=8, color="green" if right else "red")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"meta_test episodes: support (first of K={shots}) and a query per class, tuned learner", fontsize=9)
    return save_figure(fig, "episodes.png")


def accuracy_cell(stat: dict) -> str:
    """``97.1 ± 0.4 %``."""
    return f"{100 * stat['accuracy']:.1f} ± {100 * stat['ci95']:.1f} %"


def headline_table(metrics: dict, learners: tuple[str, ...]) -> str:
    """meta_test accuracy at the headline steps for K = the training K."""
    k = f"k{metrics['protocol']['shots']}"
    steps = sorted(metrics["tuned"]["test"]["query"][k], key=lambda s: int(s.removeprefix("step")))
    header = ["learner", "trained steps"] + [f"{s.removeprefix('step')} steps" for s in steps]
    rows = [
        [LABELS[n], str(metrics[n]["inner_steps"])] + [accuracy_cell(metrics[n]["test"]["query"][k][s]) for s in steps]
        for n in learners
    ]
    rows.append([FLOOR_LABEL, "none"] + [accuracy_cell(metrics[FLOOR]["test"]["query"][k])] * len(steps))
    return table(header, rows)


def paired_accuracy_table(metrics: dict) -> str:
    """The tuned learner minus each other row, in accuracy points, on the same episodes."""
    return paired_table(metrics, LEARNERS, (FLOOR, FLOOR_LABEL), "query", "accuracy",
                        lambda m, ci: f"{100 * m:+.2f} ± {100 * ci:.2f} points", higher_is_better=True)  # fmt: skip


def kshot_table(metrics: dict, learners: tuple[str, ...], eval_shots: list[int]) -> str:
    """Accuracy after one step for each K (support images per class)."""
    ks = sorted(eval_shots)
    rows = [[LABELS[n]] + [accuracy_cell(metrics[n]["test"]["query"][f"k{k}"]["step1"]) for k in ks] for n in learners]
    rows.append([FLOOR_LABEL] + [accuracy_cell(metrics[FLOOR]["test"]["query"][f"k{k}"]) for k in ks])
    return table(["learner"] + [f"K={k}" for k in ks], rows)


def figures(params: Params, device: torch.device) -> dict[str, str]:
    """Draw the classification figures; return their file names by key."""
    return {
        "accuracy": accuracy_figure(LEARNERS, params.tasks.ways, params.tasks.family),
        "episodes": episodes_figure(device, params.tasks.shots),
    }


def settings_text(params: Params) -> str:
    """The image source, the class splits and the network."""
    tasks = params.tasks
    splits = load_manifest(paths.TASKS)["splits"]
    classes = {name: f"{len(e['classes'])} ({len(e['sources'])} sources)" for name, e in splits.items()}
    source = "scikit-learn's handwritten 8x8 digits" if tasks.family == "digits" else f"`{tasks.root}`"
    return f"""\
{tasks.ways}-way {tasks.shots}-shot classification on {source}, rotations {tasks.rotations} as extra
classes. Source classes are split disjointly and each split takes every rotation of its sources, so no held-out class
is a turned copy of a training class: meta_train {classes["meta_train"]}, meta_val {classes["meta_val"]}, meta_test
{classes["meta_test"]} classes. {tasks.query} query images per class in the stored episodes (meta-training episodes
draw `query` of the setting below). Network: `{params.model.arch}`."""


def results_text(params: Params, metrics: dict, figures: dict) -> str:
    """Protocol, headline table and the K-shot comparison."""
    tasks, protocol = params.tasks, metrics["protocol"]
    omniglot = ", ".join(f"{m} {v}%" for m, v in published.OMNIGLOT_5WAY_1SHOT.items())
    return f"""\
Protocol: {protocol["episodes"]} stored meta_test episodes over classes never seen in training; each learner adapts
on the K support images per class with its own inner rule (the prototypical network classifies by distance to the
class means of its embeddings, without gradient steps); mean query accuracy ± 95% CI (1.96·std/√n) over episodes.
{finetuning_text()} It was trained on every meta_train class at once (one softmax over all of them) and starts each
episode from a zero head over the episode's N classes.

The last row, the **task floor**, is no learner. Images have no true model family to fit, so in place of the
sinusoid's limit the report gives the nearest equivalent, a floor: each query image goes to the class whose K support
images have the nearest mean in raw pixels (a prototypical network without a network), scored on the same episodes
with the same CIs. A learner below it has learned no useful features. It takes no steps: every step column shows its
one value, and the figure draws it as a flat dashed line.

{headline_table(metrics, LEARNERS)}
{steps_note()}
![accuracy curves](figures/{figures["accuracy"]})

*meta_test accuracy against adaptation steps, 95% CI shaded; the prototypical network takes no steps.*

{PAIRED_TEXT}

{paired_accuracy_table(metrics)}

### K-shot comparison at one step
Learners trained at K = {tasks.shots} adapt on the first K support images per class of each meta_test episode.

{kshot_table(metrics, LEARNERS, tasks.eval_shots)}

For orientation only, **published** Omniglot 5-way 1-shot accuracies ({published.OMNIGLOT_SOURCE}): {omniglot};
another dataset, not comparable line by line."""


def kinds_text(params: Params, metrics: dict) -> str:
    """The kinds of meta-learner side by side (:mod:`metahpo.reporting.kinds`)."""
    return kinds_section(params, metrics, accuracy_cell, "query accuracy", "query", higher_is_better=True)


def examples_text(figures: dict) -> str:
    """The example-episodes figure and its caption."""
    return f"""![example episodes](figures/{figures["episodes"]})

*Example meta_test episodes: the first support image of each class, and one query per class with the tuned
learner's prediction after its trained steps (green: right, red: wrong).*"""
