"""DVC stage ``train``: the tuned learner, the baselines and the other kinds' best settings, with the full budget."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from dvclive import Live

from metahpo import paths
from metahpo.atomic import atomic_dir, write_json
from metahpo.errors import ArtifactError
from metahpo.executors import TrialRunner
from metahpo.family import family_of
from metahpo.json_files import load_json_object
from metahpo.learners.artifacts import save_learner
from metahpo.learners.finetuning import choose_finetuning
from metahpo.learners.memory import check_fits
from metahpo.learners.metatrain import build_learner, meta_train, on_cpu
from metahpo.learners.settings import apply_point, default_setting, learner_config, train_settings
from metahpo.learners.timing import predict, timed, write_timing
from metahpo.params import Params
from metahpo.search.kind_bests import kind_bests, searched_kinds
from metahpo.tasks.storage import check_generated_with, load_split
from metahpo.validation import TUNABLE, outside_space, validate_setting


def read_best(params: Params) -> dict:
    """The tuned setting from the search stage's ``best.json``, checked against the tunable keys."""
    setting = load_json_object(paths.BEST, ArtifactError, "run the search stage first").get("setting")
    if not isinstance(setting, dict):
        raise ArtifactError(f"{paths.BEST}: setting: expected a mapping of meta-hyperparameters; rerun the search")
    problems = validate_setting(setting)
    if problems:
        raise ArtifactError(f"{paths.BEST}: setting.{problems[0]}")
    fixed = default_setting(params)
    unsearched = [k for k in fixed if k not in params.search.space and setting[k] != fixed[k]]
    if unsearched:
        key = unsearched[0]
        raise ArtifactError(
            f"{paths.BEST}: setting.{key} = {setting[key]!r} is not searched, so it must be "
            f"{TUNABLE[key][0]}.{key} = {fixed[key]!r}; rerun the search stage"
        )
    for key, where in outside_space(setting, params.search.space):
        raise ArtifactError(
            f"{paths.BEST}: setting.{key} = {setting[key]!r} is {where} (search.space.{key}); rerun the search stage"
        )
    return apply_point(params, setting)


PROTONET_NOTE = "prototypical network on the tuned architecture's features, trained on the same episodes"


class EarlyStop(Exception):
    """Raised at a validation when ``train.patience`` validations in a row found nothing better."""


class TrainingLog(Live):
    """DVCLive's ``Live``, safe to end in several learner processes at once.

    ``Live.end`` removes one signal file shared by the whole experiment run
    (``.dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED``) after checking that it exists; when learners train in
    parallel, another process can remove it in between, which is no failure of this learner.
    """

    def end(self) -> None:
        try:
            super().end()
        except FileNotFoundError as exc:
            if not str(exc.filename).endswith("DVCLIVE_STEP_COMPLETED"):
                raise


def train_learner(
    name: str,
    setting: dict,
    params: Params,
    pool,
    val: dict,
    device: torch.device,
    adapt_steps=None,
    outputs: int | None = None,
    logs=None,
):
    """Meta-train one learner for at most ``train.iterations``, keeping the weights that did best on meta_val.

    Every ``train.log_every`` iterations the meta_val metric is measured and logged with DVCLive; the
    weights of the best value are kept, and training stops once ``train.patience`` validations in a
    row (0: never) brought no improvement. ``adapt_steps=0`` trains without an inner loop: plain
    regression on every task's points, or (with a pool of global labels and ``outputs`` classes)
    classification over every class. The curves go to ``logs/name`` (default ``reports/train``).
    Returns the learner and ``{best_iteration, trained_iterations}``.
    """
    family, train = family_of(params), params.train
    config = learner_config(setting, params)
    learner = build_learner(replace(config, outputs=outputs or config.outputs), params.seed, device)
    budget = replace(train_settings(setting, params, train.iterations), adapt_steps=adapt_steps)
    best: dict = {"value": None, "iteration": 0, "weights": None, "last": 0}
    with TrainingLog(str(Path(logs or paths.TRAIN_LOGS) / name), dvcyaml=None, save_dvc_exp=False, report=None) as live:

        def on_log(step: int, loss: float) -> None:
            value = family.validation_metric(learner, val, setting["inner_steps"], device)
            live.step = step
            live.log_metric("meta_loss", loss)
            live.log_metric(family.val_metric, value)
            live.next_step()
            best["last"] = step
            if math.isfinite(value) and (best["value"] is None or family.better(value, best["value"])):
                best.update(value=value, iteration=step, weights=on_cpu(learner.state_dict()))
            elif train.patience and step - best["iteration"] >= train.patience * train.log_every:
                raise EarlyStop

        try:
            meta_train(learner, pool, budget, params.seed, train.log_every, on_log, progress=name)
        except EarlyStop:
            print(f"{name}: no better meta_val {family.val_metric} in {train.patience} validations, "
                  f"stopped at iteration {best['last']}", file=sys.stderr)  # fmt: skip
    if best["weights"] is not None:
        learner.load_state_dict(best["weights"])
    return learner, {"best_iteration": best["iteration"], "trained_iterations": best["last"]}


def learner_settings(params: Params) -> dict[str, dict]:
    """The setting of every learner: the untuned defaults, the search's best, and the baselines.

    Both families: a pretrained network with the tuned architecture, outer optimiser and budget, which
    adapts at test time with plain SGD; its rule, rate and steps here are ``maml``'s and the tuned ones
    until :func:`tune_pretrained` replaces them with its own. Classification also: a prototypical network
    with the same architecture, optimiser and budget.
    """
    tuned = read_best(params)
    baselines = {"protonet": "protonet", "pretrained": "maml"}
    return {
        "tuned": tuned,
        "default": default_setting(params),
        **{name: {**tuned, "algorithm": baselines[name]} for name in family_of(params).learners[2:]},
    }


def kind_settings(params: Params, tuned: dict) -> tuple[dict[str, dict], dict]:
    """``(settings, record)`` of the other kinds of meta-learner the search tried, to train beside the tuned one.

    Each kind of ``search.space.algorithm`` (:data:`metahpo.learners.KINDS`) is represented by its best
    search trial (:func:`metahpo.search.kind_bests.kind_bests`, chosen on meta_val only): the tuned learner
    for the tuned setting's kind, a learner ``best_<kind>`` for each other kind. ``record`` (written to
    ``models/kinds.json``) names each kind's learner and trial; ``train.compare_kinds: false`` trains none.
    """
    kinds = searched_kinds(params.search.space) if params.train.compare_kinds else []
    settings, record = {}, {}
    for kind, best in kind_bests(paths.TRIALS, kinds).items():
        if "point" not in best:
            record[kind] = {"learner": None, **best}
            continue
        setting = apply_point(params, best["point"])
        name = "tuned" if setting == tuned else f"best_{kind}"
        if name != "tuned":
            settings[name] = setting
        record[kind] = {"learner": name, **{k: v for k, v in best.items() if k != "point"}, "setting": setting}
    return settings, {"compare_kinds": params.train.compare_kinds, "kinds": record}


def copy_logs(source: Path, target: Path) -> None:
    """The training curves of ``source`` as those of ``target`` (replacing any earlier ones)."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


def train_job(name: str, setting: dict, params: Params, adapt_steps: int | None, logs: Path) -> tuple[dict, dict]:
    """Train one learner here or in a worker, logging under ``logs``; return its weights on the CPU and its summary."""
    from metahpo.runtime import setup  # in a worker: threads, deterministic kernels, device

    device = setup(params)
    family, joint = family_of(params), name == "pretrained"
    pool = family.make_pool(load_split(paths.TASKS, "meta_train"), device, joint=joint)
    val = load_split(paths.TASKS, "meta_val")
    outputs = family.pretrain_outputs(pool) if joint else None
    learner, summary = train_learner(name, setting, params, pool, val, device, adapt_steps, outputs, logs)
    return on_cpu(learner.state_dict()), summary


def distinct_jobs(settings: dict[str, dict], names: list[str]) -> tuple[dict, dict]:
    """``(jobs, same_as)``: the learners to train with their inner steps, and each other one's twin.

    A learner whose setting equals an earlier one's (the search kept the baseline) is not trained
    again: the same setting, seed and data give the same weights.
    """
    jobs, same_as, by_key = {}, {}, {}
    for name in names:
        adapt_steps = 0 if name == "pretrained" else None
        key = json.dumps([settings[name], adapt_steps], sort_keys=True)
        if key in by_key:
            same_as[name] = by_key[key]
        else:
            by_key[key], jobs[name] = name, adapt_steps
    return jobs, same_as


ADAPTS = {"maml": "the whole network", "anil": "the head only"}


def tune_pretrained(weights: dict, setting: dict, params: Params, device: torch.device) -> tuple[dict, dict, dict]:
    """The pretrained network's own fine-tuning: ``(setting, record of the search, weights to save)``.

    The weights start as the family's :meth:`fresh_head` makes them (classification: a zero N-way head);
    for each of the family's fine-tuning rules (which weights adapt) the grid of ``train.finetune`` is
    scored on meta_val only (:func:`metahpo.learners.finetuning.choose_finetuning`), and the best rule,
    rate and steps are kept (ties: the earlier rule). meta_test and meta_ood are never read.
    """
    family = family_of(params)
    weights = family.fresh_head(weights)
    val = load_split(paths.TASKS, "meta_val")

    def score(candidate, steps: int, part: slice):
        return family.finetune_score(candidate, val, steps, part, device)

    start, learners = time.perf_counter(), {}
    for algorithm in family.finetune_algorithms:
        learner = build_learner(learner_config({**setting, "algorithm": algorithm}, params), params.seed, device)
        learner.load_state_dict(weights)
        learners[algorithm] = learner
    episodes = len(val["support_index"] if "support_index" in val else val["support_x"])
    chosen = choose_finetuning(learners, params.train.finetune, score, episodes, device)
    algorithm = chosen["algorithm"]
    print(f"pretrained: fine-tuning {ADAPTS[algorithm]} at rate {chosen['inner_lr']:.4g} for {chosen['inner_steps']} "
          f"steps chosen on meta_val in {time.perf_counter() - start:.1f} s", file=sys.stderr)  # fmt: skip
    record = {
        "chosen_on": "meta_val",
        "score": family.finetune_score_name,
        "adapts": ADAPTS[algorithm],
        **chosen,
    }
    tuned = {**setting, "algorithm": algorithm, "inner_lr": chosen["inner_lr"], "inner_steps": chosen["inner_steps"]}
    return tuned, record, weights


def train_stage(params: Params, device: torch.device) -> None:
    """Train every learner of the task family, ``train.workers`` at a time; save them once all trained.

    ``models/`` and ``reports/train/`` are filled in staging folders and replace the old ones only
    when every learner is saved, so an interrupted run leaves each complete or absent.
    """
    check_generated_with(paths.TASKS, params.tasks, params.seed)
    untuned_sizes = "meta.meta_batch_size, meta.inner_steps, meta.query or model.hidden"
    check_fits(default_setting(params), params, device, untuned_sizes)
    settings = learner_settings(params)
    check_fits(settings["tuned"], params, device, f"the setting in {paths.BEST} (search.space)")
    compared, kinds = kind_settings(params, settings["tuned"])
    for name, setting in compared.items():
        check_fits(setting, params, device, f"the setting of {name} in {paths.TRIALS} (search.space)")
    settings |= compared
    learners = (*family_of(params).learners, *compared)
    jobs, same_as = distinct_jobs(settings, learners)
    workers = min(params.train.workers, len(jobs))
    for split in ("meta_train", "meta_val"):  # a bad task file is refused before the prediction is printed
        load_split(paths.TASKS, split)
    predicted = predict(settings, params, ("tuned", "default", *compared))
    with atomic_dir(paths.MODELS) as models, atomic_dir(paths.TRAIN_LOGS) as logs:
        with TrialRunner("local", workers) as runner:
            futures = {
                name: runner.submit(timed, train_job, name, settings[name], params, steps, logs)
                for name, steps in jobs.items()
            }
            trained, took = {}, {}
            for name, future in futures.items():
                trained[name], took[name] = future.result()
        write_timing(logs, predicted, took)
        for name, twin in same_as.items():
            print(f"{name}: same setting as {twin}, reusing its weights", file=sys.stderr)
            copy_logs(logs / twin, logs / name)
            trained[name] = trained[twin]
        weights, summary = trained["pretrained"]
        settings["pretrained"], finetuning, weights = tune_pretrained(weights, settings["pretrained"], params, device)
        trained["pretrained"] = weights, summary
        for name in learners:
            weights, summary = trained[name]
            learner = build_learner(learner_config(settings[name], params), params.seed, device)
            learner.load_state_dict(weights)
            extra = {"setting": settings[name], "iterations": params.train.iterations, **summary}
            if name == "protonet":
                extra["training"] = PROTONET_NOTE
            if name == "pretrained":
                extra.update(training=family_of(params).pretrained_note, finetuning=finetuning)
            save_learner(learner, models / name, extra)
        write_json(models / paths.KINDS, kinds)
