"""Resolve a full meta-hyperparameter setting from params.yaml and a search point."""

from __future__ import annotations

from metahpo.config import TUNABLE, image_side, is_classification
from metahpo.learners import LearnerConfig
from metahpo.metatrain import TrainSettings


def default_setting(params: dict) -> dict:
    """The untuned setting: every tunable key from the ``model`` and ``meta`` sections."""
    return {key: params[group][key] for key, (group, _) in TUNABLE.items()}


def apply_point(params: dict, point: dict) -> dict:
    """The default setting with the searched values of ``point`` substituted."""
    unknown = set(point) - set(TUNABLE)
    if unknown:
        raise KeyError(f"not tunable: {sorted(unknown)}")
    return {**default_setting(params), **point}


def input_shape(tasks: dict) -> tuple[int, ...]:
    """Shape of one input: ``(1,)`` for the sinusoid, ``(side, side)`` for images."""
    if not is_classification(tasks):
        return (1,)
    return (image_side(tasks), image_side(tasks))


def learner_config(setting: dict, params: dict) -> LearnerConfig:
    """The learner part of a setting, for the task family and architecture of ``params``."""
    classification = is_classification(params["tasks"])
    return LearnerConfig(
        algorithm=setting["algorithm"],
        hidden=setting["hidden"],
        layers=setting["layers"],
        inner_lr=setting["inner_lr"],
        inner_steps=setting["inner_steps"],
        arch=params["model"]["arch"],
        input_shape=input_shape(params["tasks"]),
        outputs=params["tasks"]["ways"] if classification else 1,
        loss="cross_entropy" if classification else "mse",
    )


def train_settings(setting: dict, tasks: dict, iterations: int) -> TrainSettings:
    """The outer-loop part of a setting, for ``iterations`` meta-iterations."""
    return TrainSettings(
        iterations=iterations,
        meta_batch_size=setting["meta_batch_size"],
        outer_lr=setting["outer_lr"],
        outer_schedule=setting["outer_schedule"],
        shots=tasks["shots"],
        query=setting["query"],
    )
