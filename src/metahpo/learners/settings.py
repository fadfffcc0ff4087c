"""Resolve a full meta-hyperparameter setting from params.yaml and a search point."""

from __future__ import annotations

from metahpo.learners.family import family_of
from metahpo.learners.meta_learner import LearnerConfig
from metahpo.learners.metatrain import TrainSettings
from metahpo.params import TUNABLE, Params


def default_setting(params: Params) -> dict:
    """The untuned setting: every tunable key from the ``model`` and ``meta`` sections."""
    return {key: getattr(getattr(params, group), key) for key, (group, _) in TUNABLE.items()}


def apply_point(params: Params, point: dict) -> dict:
    """The default setting with the searched values of ``point`` substituted."""
    unknown = set(point) - set(TUNABLE)
    if unknown:
        raise KeyError(f"not tunable: {sorted(unknown)}")
    return {**default_setting(params), **point}


def learner_config(setting: dict, params: Params) -> LearnerConfig:
    """The learner part of a setting, for the task family and architecture of ``params``."""
    family = family_of(params)
    return LearnerConfig(
        algorithm=setting["algorithm"],
        hidden=setting["hidden"],
        layers=setting["layers"],
        inner_lr=setting["inner_lr"],
        inner_steps=setting["inner_steps"],
        arch=params.model.arch,
        input_shape=family.input_shape,
        outputs=family.outputs,
        loss=family.loss,
        representation=setting["representation"],
        rule_hidden=setting["rule_hidden"],
        inner_rates=setting["inner_rates"],
        extra_steps=setting["extra_steps"],
    )


def train_settings(setting: dict, params: Params, iterations: int) -> TrainSettings:
    """The outer-loop part of a setting, for ``iterations`` meta-iterations."""
    return TrainSettings(
        iterations=iterations,
        meta_batch_size=setting["meta_batch_size"],
        outer_lr=setting["outer_lr"],
        outer_schedule=setting["outer_schedule"],
        shots=params.tasks.shots,
        query=setting["query"],
        multi_step_loss=setting["multi_step_loss"],
        first_order_fraction=setting["first_order_fraction"],
    )
