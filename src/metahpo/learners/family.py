"""The task family, chosen once where a stage starts: sinusoid regression or N-way image classification.

Everything that differs between the two kinds of task, once their data exists, lives behind this one
interface (the generate stage picks its generator in :mod:`metahpo.tasks.generate`): the learners
trained and evaluated (a pretrained network for both, plus a prototypical network for
classification), the network's input shape, outputs and loss, the meta-training sampler, the search
objective and the penalty told for a failed trial, the metric logged during the final training, how
the pretrained network starts and is scored when its fine-tuning is chosen, and the shape of a
meta-step for the memory guard. Each family names its ``problem``; the evaluation and reporting layers
register their module for each problem in a :class:`ByProblem` and look it up by the family.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metahpo.learners import ALGORITHMS, LEARNER_ALGORITHMS
from metahpo.learners.adaptation import DIVERGED_FACTOR, adaptation_errors, classification_scores, validation_mse
from metahpo.learners.mlp import head_names
from metahpo.params import Params
from metahpo.tasks.episodes import EpisodePool, select_episodes
from metahpo.tasks.sinusoid import TaskPool

FINETUNE_CHUNK = 25  # episodes adapted at once while the pretrained network's fine-tuning is chosen


def zero_predictor_mse(split: dict) -> float:
    """Grid MSE of predicting 0 everywhere on a regression split."""
    return float((split["grid_y"].astype(np.float64) ** 2).mean())


class Regression:
    """Sinusoid regression: MSE loss, scored on the 100-point grid; the third learner is pretrained."""

    problem = "regression"
    learners = ("tuned", "default", "pretrained")
    algorithms = ALGORITHMS
    loss = "mse"
    outputs = 1
    input_shape = (1,)
    val_metric = "val_grid_mse"  # logged during the final training
    val_name = "meta_val grid MSE"
    loss_name = "query MSE"
    # The pretrained network fine-tunes every weight by SGD (maml's inner rule).
    finetune_algorithms = ("maml",)
    finetune_score_name = "meta_val grid MSE"
    pretrained_note = (
        "joint regression on all meta-train tasks (no inner loop), fine-tuned at test time by SGD at its own rate "
        "and steps, chosen on meta_val (finetuning)"
    )

    def __init__(self, params: Params):
        self.params, self.tasks = params, params.tasks

    def make_pool(self, split: dict[str, np.ndarray], device: torch.device, joint: bool = False) -> TaskPool:
        """The meta-training sampler of a loaded ``meta_train`` split (the same for joint pretraining)."""
        return TaskPool.from_split(split, device)

    def pretrain_outputs(self, pool: TaskPool) -> int:
        """Outputs of the network while it is pretrained jointly on ``pool``: the task's own."""
        return self.outputs

    def fresh_head(self, state: dict) -> dict:
        """The pretrained state dict as fine-tuning starts from it: unchanged for regression."""
        return state

    def finetune_score(self, learner, split: dict, max_steps: int, part: slice, device: torch.device) -> np.ndarray:
        """Grid MSE ``[max_steps + 1, tasks]`` of the tasks ``part`` of ``split`` after 0..``max_steps`` steps."""
        tasks = {k: v if k == "grid_x" else v[part] for k, v in split.items()}  # the grid inputs are shared
        errors = adaptation_errors(learner, tasks, max_steps, len(tasks["support_x"]), device, self.tasks.shots)
        return errors["grid"]

    def objective(self, learner, split: dict, steps: int, device: torch.device) -> float:
        """The search objective on ``split`` after ``steps`` steps (lower is better): the mean grid MSE.

        With ``search.stable_steps`` above ``steps`` it is the worse of the grid MSEs after ``steps`` and after
        ``stable_steps`` steps: a learner that gets worse (or diverges) when it adapts for longer than it was
        trained to is scored by that, so neither the search nor the final training's choice of weights
        prefers it for its first step alone.
        """
        longer = self.params.search.stable_steps
        if longer <= steps:
            return validation_mse(learner, split, steps, self.tasks.shots, device)
        errors = adaptation_errors(learner, split, longer, len(split["support_x"]), device, self.tasks.shots)
        means = errors["grid"].mean(axis=1)
        # Diverged as the evaluation defines it: not finite, or far above the error before adapting.
        if not np.isfinite(means[longer]) or means[longer] > DIVERGED_FACTOR * means[0]:
            return math.nan
        return float(max(means[steps], means[longer]))

    def validation_metric(self, learner, split: dict, steps: int, device: torch.device) -> float:
        """The meta_val metric logged during the final training: the grid MSE."""
        return self.objective(learner, split, steps, device)

    @staticmethod
    def better(value: float, than: float) -> bool:
        """Whether a value of :meth:`validation_metric` beats another (lower MSE)."""
        return value < than

    def penalty_floor(self, meta_val: dict) -> float:
        """Grid MSE of predicting 0 everywhere: the least value told for a failed trial."""
        return zero_predictor_mse(meta_val)

    def objective_name(self) -> str:
        """What the search minimises, in words."""
        return "meta_val grid MSE"

    def step_shape(self, setting: dict) -> dict:
        """``points`` per task of one meta-step of ``setting`` (see :func:`metahpo.learners.memory.meta_step_bytes`)."""
        return {"points": self.tasks.shots + setting["query"]}


class Classification:
    """N-way K-shot image classification: cross-entropy; the baselines are a prototypical and a pretrained network."""

    problem = "classification"
    learners = ("tuned", "default", "protonet", "pretrained")
    algorithms = LEARNER_ALGORITHMS
    loss = "cross_entropy"
    val_metric = "val_accuracy"
    val_name = "meta_val accuracy"
    loss_name = "query cross-entropy"
    # The pretrained network gets a fresh N-way head and fine-tunes the head only (anil's inner rule) or
    # every weight (maml's); meta_val chooses which.
    finetune_algorithms = ("anil", "maml")
    finetune_score_name = "meta_val error rate (1 - accuracy)"
    pretrained_note = (
        "joint classification over every meta-train class (no inner loop), then a fresh N-way head (zeros), "
        "fine-tuned at test time by SGD on the support images: the head only or the whole network, at its own "
        "rate and steps, chosen on meta_val (finetuning)"
    )

    def __init__(self, params: Params):
        self.params, self.tasks = params, params.tasks
        self.outputs = self.tasks.ways
        self.input_shape = (self.tasks.image_side, self.tasks.image_side)

    def make_pool(self, split: dict[str, np.ndarray], device: torch.device, joint: bool = False) -> EpisodePool:
        """The meta-training sampler of a loaded ``meta_train`` split: fresh N-way episodes.

        ``joint``: labelled by the classes' own indices, for a network trained on every class at once.
        """
        return EpisodePool.from_split(split, self.tasks.ways, device, global_labels=joint)

    def pretrain_outputs(self, pool: EpisodePool) -> int:
        """Outputs of the network while it is pretrained jointly on ``pool``: one per meta_train class."""
        return pool.by_class.shape[0]

    def fresh_head(self, state: dict) -> dict:
        """The pretrained state dict with the head over every meta_train class replaced by a zero N-way head.

        A zero head scores every class alike until the first step, which moves it toward the support
        images' features of each class; it is the same for every seed.
        """
        names = {key.removeprefix("weights.") for key in state}
        head = {"head_w", "head_b"} if self.params.model.arch == "conv" else set(head_names(dict.fromkeys(names)))
        return {
            key: w.new_zeros(*w.shape[:-1], self.outputs) if key.removeprefix("weights.") in head else w
            for key, w in state.items()
        }

    def finetune_score(self, learner, split: dict, max_steps: int, part: slice, device: torch.device) -> np.ndarray:
        """Error rate (1 - query accuracy) ``[max_steps + 1, episodes]`` of the episodes ``part`` of ``split``."""
        # Episodes a few at a time keep the conv net's working set in the CPU cache (docs/evaluation.md, Chunks).
        episodes = select_episodes(split, part)
        return 1.0 - self._scores(learner, episodes, max_steps, device, FINETUNE_CHUNK)["accuracy"]

    def _scores(self, learner, split: dict, steps: int, device: torch.device, chunk: int | None = None):
        chunk = chunk or len(split["support_index"])
        return classification_scores(learner, split, steps, chunk, device, self.tasks.shots)

    def objective(self, learner, split: dict, steps: int, device: torch.device) -> float:
        """The search objective (lower is better): mean query cross-entropy, or the error rate 1 - accuracy."""
        scores = self._scores(learner, split, steps, device)
        if self.params.search.objective == "loss":
            return float(scores["loss"][steps].mean())
        return float(1.0 - scores["accuracy"][steps].mean())

    def validation_metric(self, learner, split: dict, steps: int, device: torch.device) -> float:
        """The meta_val metric logged during the final training: the query accuracy."""
        return float(self._scores(learner, split, steps, device)["accuracy"][steps].mean())

    @staticmethod
    def better(value: float, than: float) -> bool:
        """Whether a value of :meth:`validation_metric` beats another (higher accuracy)."""
        return value > than

    def penalty_floor(self, meta_val: dict) -> float:
        """A classifier's objective at chance: cross-entropy log(N), or error rate (N - 1) / N."""
        ways = self.tasks.ways
        return math.log(ways) if self.params.search.objective == "loss" else (ways - 1) / ways

    def objective_name(self) -> str:
        """What the search minimises, in words: a meta_val score, or its mean over class folds."""
        search = self.params.search
        name = "cross-entropy" if search.objective == "loss" else "error rate (1 - accuracy)"
        return f"{name} (mean over {search.class_folds} class folds)" if search.class_folds > 1 else f"meta_val {name}"

    def step_shape(self, setting: dict) -> dict:
        """Points, network and image side of one meta-step of ``setting``, for the memory estimate."""
        side, arch = self.tasks.image_side, self.params.model.arch
        return {
            "points": self.tasks.ways * (self.tasks.shots + setting["query"]),
            "arch": arch,
            "side": side if arch == "conv" else side * side,
            "outputs": self.tasks.ways,
        }


TaskFamily = Regression | Classification
FAMILIES = (Regression, Classification)


class ByProblem:
    """One layer's module (or any handler) for each family's ``problem``: ``MODULES[family]``.

    A layer above the families registers its own (``ByProblem(regression=..., classification=...)``), so that
    it dispatches on the family in one place; a problem of :data:`FAMILIES` left without one is refused at import.
    """

    def __init__(self, **by_problem):
        problems = [family.problem for family in FAMILIES]
        if sorted(by_problem) != sorted(problems):
            raise ValueError(f"expected a handler for each of {', '.join(problems)}, got {', '.join(by_problem)}")
        self.by_problem = by_problem

    def __getitem__(self, family: TaskFamily):
        return self.by_problem[family.problem]


def family_of(params: Params) -> TaskFamily:
    """The family of ``params.tasks``: :class:`Classification` for images, else :class:`Regression`."""
    return Classification(params) if params.tasks.classification else Regression(params)
