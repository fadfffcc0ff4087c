"""Meta-train one learner with the full budget, in this process or a worker, and tune the pretrained network's
fine-tuning; the train stage (:mod:`metahpo.search.final_training`) runs these for every learner."""

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
from metahpo.learners.algorithms.registry import algorithm as algorithm_of
from metahpo.learners.family import family_of
from metahpo.learners.finetuning import choose_finetuning
from metahpo.learners.metatrain import build_learner, meta_train, on_cpu
from metahpo.learners.settings import learner_config, train_settings
from metahpo.params import Params
from metahpo.tasks.storage import load_split


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
    iterations: int | None = None,
):
    """Meta-train one learner for ``iterations`` (default ``train.iterations``), keeping the best weights on meta_val.

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
    budget = replace(train_settings(setting, params, iterations or train.iterations), adapt_steps=adapt_steps)
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


def copy_logs(source: Path, target: Path) -> None:
    """The training curves of ``source`` as those of ``target`` (replacing any earlier ones)."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


def train_job(
    name: str, setting: dict, params: Params, adapt_steps: int | None, logs: Path, iterations: int
) -> tuple[dict, dict]:
    """Train one learner for ``iterations`` here or in a worker, logging under ``logs``; return weights and summary."""
    from metahpo.runtime import setup  # in a worker: threads, deterministic kernels, device

    device = setup(params)
    family, joint = family_of(params), name == "pretrained"
    pool = family.make_pool(load_split(paths.TASKS, "meta_train"), device, joint=joint)
    val = load_split(paths.TASKS, "meta_val")
    outputs = family.pretrain_outputs(pool) if joint else None
    learner, summary = train_learner(name, setting, params, pool, val, device, adapt_steps, outputs, logs, iterations)
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


ADAPTS = {"all": "the whole network", "head": "the head only"}  # by the rule's ``adapts``


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

    # Plain SGD: every step of the fine-tuning is its own rule, chosen on meta_val with the steps it runs
    # (none is past a trained step, so meta.extra_steps does not apply to it).
    setting = {**setting, "extra_steps": "plain"}
    start, learners = time.perf_counter(), {}
    for algorithm in family.finetune_algorithms:
        learner = build_learner(learner_config({**setting, "algorithm": algorithm}, params), params.seed, device)
        learner.load_state_dict(weights)
        learners[algorithm] = learner
    episodes = len(val["support_index"] if "support_index" in val else val["support_x"])
    chosen = choose_finetuning(learners, params.train.finetune, score, episodes, device)
    algorithm = chosen["algorithm"]
    adapts = ADAPTS[algorithm_of(algorithm).adapts]
    print(f"pretrained: fine-tuning {adapts} at rate {chosen['inner_lr']:.4g} for {chosen['inner_steps']} "
          f"steps chosen on meta_val in {time.perf_counter() - start:.1f} s", file=sys.stderr)  # fmt: skip
    record = {
        "chosen_on": "meta_val",
        "score": family.finetune_score_name,
        "adapts": adapts,
        **chosen,
    }
    tuned = {**setting, "algorithm": algorithm, "inner_lr": chosen["inner_lr"], "inner_steps": chosen["inner_steps"]}
    return tuned, record, weights
