"""DVC stage ``train``: the tuned learner and the untuned baseline, with the full budget."""

from __future__ import annotations

import json
from dataclasses import replace

import torch
from dvclive import Live

from metahpo import paths
from metahpo.adaptation import validation_mse
from metahpo.artifacts import save_learner
from metahpo.config import validate_setting
from metahpo.errors import ArtifactError
from metahpo.learners import MetaLearner
from metahpo.metatrain import TaskPool, build_learner, meta_train
from metahpo.resources import check_fits
from metahpo.settings import apply_point, default_setting, learner_config, train_settings
from metahpo.tasks import load_split


def read_best(params: dict) -> dict:
    """The tuned setting from the search stage's ``best.json``, checked against the tunable keys."""
    try:
        setting = json.loads(paths.BEST.read_text(encoding="utf-8"))["setting"]
    except FileNotFoundError:
        raise ArtifactError(f"{paths.BEST}: missing; run the search stage first") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{paths.BEST}: not a valid search result ({exc!r})") from None
    problems = validate_setting(setting)
    if problems:
        raise ArtifactError(f"{paths.BEST}: setting.{problems[0]}")
    return apply_point(params, setting)


PRETRAINED_NOTE = "joint regression on all meta-train tasks (no inner loop), fine-tuned at test time by SGD"


def train_learner(
    name: str, setting: dict, params: dict, pool: TaskPool, val: dict, device: torch.device, adapt_steps=None
) -> MetaLearner:
    """Meta-train one learner with the full budget, logging its curves with DVCLive.

    ``adapt_steps=0`` trains without an inner loop: plain regression on every task's points.
    """
    learner = build_learner(learner_config(setting), params["seed"], device)
    budget = replace(train_settings(setting, params["tasks"], params["train"]["iterations"]), adapt_steps=adapt_steps)
    with Live(str(paths.TRAIN_LOGS / name), dvcyaml=None, save_dvc_exp=False, report=None) as live:

        def on_log(step: int, loss: float) -> None:
            val_mse = validation_mse(learner, val, setting["inner_steps"], params["tasks"]["shots"], device)
            live.step = step
            live.log_metric("meta_loss", loss)
            live.log_metric("val_grid_mse", val_mse)
            live.next_step()

        meta_train(learner, pool, budget, params["seed"], params["train"]["log_every"], on_log, progress=name)
    return learner


def learner_settings(params: dict) -> dict[str, dict]:
    """The setting of every learner: the untuned defaults, the search's best, and the pretrained baseline.

    The pretrained baseline has the tuned architecture, outer optimiser and budget, and adapts at test
    time with plain SGD (``maml``'s rule) at the tuned inner learning rate and number of steps.
    """
    tuned = read_best(params)
    return {"tuned": tuned, "default": default_setting(params), "pretrained": {**tuned, "algorithm": "maml"}}


def train_stage(params: dict, device: torch.device) -> None:
    """Train every learner of :data:`paths.LEARNERS`; save them only once all trained without diverging."""
    pool = TaskPool.from_split(load_split(paths.TASKS, "meta_train"), device)
    val = load_split(paths.TASKS, "meta_val")
    settings = learner_settings(params)
    points = params["tasks"]["shots"] + params["tasks"]["query"]
    check_fits(settings["default"], points, device, "meta.meta_batch_size, meta.inner_steps or model.hidden")
    check_fits(settings["tuned"], points, device, f"the setting in {paths.BEST} (search.space)")
    trained = {
        name: train_learner(name, settings[name], params, pool, val, device, 0 if name == "pretrained" else None)
        for name in paths.LEARNERS
    }
    for name, learner in trained.items():
        extra = {"setting": settings[name], "iterations": params["train"]["iterations"]}
        if name == "pretrained":
            extra["training"] = PRETRAINED_NOTE
        save_learner(learner, paths.MODELS / name, extra)
