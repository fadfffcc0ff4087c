"""DVC stage ``train``: the tuned learner and the untuned baseline, with the full budget."""

from __future__ import annotations

import json
from dataclasses import replace

import torch
from dvclive import Live

from metahpo import paths
from metahpo.adaptation import classification_scores, validation_mse
from metahpo.artifacts import save_learner
from metahpo.config import is_classification, validate_setting
from metahpo.errors import ArtifactError
from metahpo.metatrain import build_learner, make_pool, meta_train
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
PROTONET_NOTE = "prototypical network on the tuned architecture's features, trained on the same episodes"


def validation_curve(params: dict) -> str:
    """Name of the meta_val metric logged during training."""
    return "val_accuracy" if is_classification(params["tasks"]) else "val_grid_mse"


def train_learner(name: str, setting: dict, params: dict, pool, val: dict, device: torch.device, adapt_steps=None):
    """Meta-train one learner with the full budget, logging its curves with DVCLive.

    ``adapt_steps=0`` trains without an inner loop: plain regression on every task's points.
    """
    learner = build_learner(learner_config(setting, params), params["seed"], device)
    budget = replace(train_settings(setting, params["tasks"], params["train"]["iterations"]), adapt_steps=adapt_steps)
    metric, shots, steps = validation_curve(params), params["tasks"]["shots"], setting["inner_steps"]
    with Live(str(paths.TRAIN_LOGS / name), dvcyaml=None, save_dvc_exp=False, report=None) as live:

        def on_log(step: int, loss: float) -> None:
            if metric == "val_accuracy":
                scores = classification_scores(learner, val, steps, len(val["support_index"]), device, shots)
                value = float(scores["accuracy"][steps].mean())
            else:
                value = validation_mse(learner, val, steps, shots, device)
            live.step = step
            live.log_metric("meta_loss", loss)
            live.log_metric(metric, value)
            live.next_step()

        meta_train(learner, pool, budget, params["seed"], params["train"]["log_every"], on_log, progress=name)
    return learner


def learner_settings(params: dict) -> dict[str, dict]:
    """The setting of every learner: the untuned defaults, the search's best, and a third baseline.

    Regression: a pretrained network with the tuned architecture, outer optimiser and budget, which
    adapts at test time with plain SGD (``maml``'s rule) at the tuned inner learning rate and number of
    steps. Classification: a prototypical network with the same architecture, optimiser and budget.
    """
    tuned = read_best(params)
    third = {"protonet": "protonet", "pretrained": "maml"}
    return {
        "tuned": tuned,
        "default": default_setting(params),
        **{name: {**tuned, "algorithm": third[name]} for name in paths.learners(params["tasks"])[2:]},
    }


NOTES = {"pretrained": PRETRAINED_NOTE, "protonet": PROTONET_NOTE}


def train_stage(params: dict, device: torch.device) -> None:
    """Train every learner of the task family; save them only once all trained without diverging."""
    pool = make_pool(load_split(paths.TASKS, "meta_train"), params["tasks"], device)
    val = load_split(paths.TASKS, "meta_val")
    settings = learner_settings(params)
    check_fits(settings["default"], params, device, "meta.meta_batch_size, meta.inner_steps or model.hidden")
    check_fits(settings["tuned"], params, device, f"the setting in {paths.BEST} (search.space)")
    trained = {
        name: train_learner(name, settings[name], params, pool, val, device, 0 if name == "pretrained" else None)
        for name in paths.learners(params["tasks"])
    }
    for name, learner in trained.items():
        extra = {"setting": settings[name], "iterations": params["train"]["iterations"]}
        if name in NOTES:
            extra["training"] = NOTES[name]
        save_learner(learner, paths.MODELS / name, extra)
