"""DVC stage ``train``: the tuned learner, the baselines and the other kinds' best settings, with the full budget.

The stage reads what the search found (``best.json``, each kind's best trial in ``trials.csv``), so it sits
above the search, like scikit-learn's refit after a grid search; one learner's training is
:mod:`metahpo.learners.training`.
"""

from __future__ import annotations

import sys

import torch

from metahpo import paths
from metahpo.atomic import atomic_dir, write_json
from metahpo.errors import ArtifactError
from metahpo.executors import RefusedResult, TrialRunner, collect, run_jobs
from metahpo.learners.artifacts import save_learner
from metahpo.learners.cost import final_iterations
from metahpo.learners.family import family_of
from metahpo.learners.memory import check_fits
from metahpo.learners.metatrain import build_learner
from metahpo.learners.settings import apply_point, default_setting, learner_config
from metahpo.learners.timing import predict, timed, write_timing
from metahpo.learners.training import copy_logs, distinct_jobs, train_job, tune_pretrained
from metahpo.params import TUNABLE, Params, validate_setting
from metahpo.search.kind_bests import kind_bests, searched_kinds
from metahpo.search.trial_log import load_best
from metahpo.space import outside_space
from metahpo.tasks.storage import check_generated_with, load_split


def read_best(params: Params) -> dict:
    """The tuned setting from the search stage's ``best.json``, checked against the tunable keys."""
    setting = load_best(paths.BEST, paths.TRIALS)["setting"]
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


def learner_settings(params: Params) -> dict[str, dict]:
    """The setting of every learner: the untuned defaults, the search's best, and the baselines.

    Both families: a pretrained network with the tuned architecture, outer optimiser and budget, which
    adapts at test time with plain SGD; its rule, rate and steps here are ``maml``'s and the tuned ones
    until :func:`metahpo.learners.training.tune_pretrained` replaces them with its own. Classification also:
    a prototypical network with the same architecture, optimiser and budget.
    """
    tuned = read_best(params)
    baselines = {"protonet": "protonet", "pretrained": "maml"}
    # The baselines do not meta-learn an inner loop, so MAML++'s options of the tuned setting stay off for them.
    plain = {k: v for k, v in BASELINE_OPTIONS.items() if k in tuned}
    return {
        "tuned": tuned,
        "default": default_setting(params),
        **{name: {**tuned, **plain, "algorithm": baselines[name]} for name in family_of(params).learners[2:]},
    }


BASELINE_OPTIONS = {"inner_rates": "fixed", "multi_step_loss": 0.0, "first_order_fraction": 0.0}


def learner_iterations(settings: dict[str, dict], params: Params) -> dict[str, int]:
    """Each learner's final-training iterations (:func:`metahpo.learners.cost.final_iterations`).

    The baselines (pretrained, prototypical network) share the tuned learner's architecture, outer optimiser
    and budget, so they train as many iterations as it does.
    """
    baselines = family_of(params).learners[2:]
    tuned = final_iterations(settings["tuned"], params)
    return {name: tuned if name in baselines else final_iterations(s, params) for name, s in settings.items()}


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


TRAIN_RETRIES = 1  # reruns of a learner whose worker died while it trained alone (see run_jobs)


def checked_result(name: str, value) -> tuple[tuple[dict, dict], float]:
    """A training worker's ``((weights, summary), seconds)``, checked as plain data of that shape."""
    ok = (
        isinstance(value, tuple | list) and len(value) == 2 and isinstance(value[1], float)
        and isinstance(value[0], tuple | list) and len(value[0]) == 2 and isinstance(value[0][1], dict)
        and isinstance(value[0][0], dict)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value[0][0].items())
    )  # fmt: skip
    if not ok:
        raise RefusedResult(f"result refused: the worker training {name} handed back no (weights, summary)")
    (weights, summary), seconds = value
    return (weights, summary), seconds


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
    iterations = learner_iterations(settings, params)
    predicted = predict(settings, iterations, params, ("tuned", "default", *compared))
    with atomic_dir(paths.MODELS) as models, atomic_dir(paths.TRAIN_LOGS) as logs:
        results: dict[str, tuple] = {}
        with TrialRunner("local", workers) as runner:
            work = {
                name: (timed, train_job, name, settings[name], params, steps, logs, iterations[name])
                for name, steps in jobs.items()
            }
            run_jobs(runner, work, workers, TRAIN_RETRIES, collect(results, checked_result, "training"))
        trained = {name: result for name, (result, _) in results.items()}
        write_timing(logs, predicted, {name: seconds for name, (_, seconds) in results.items()})
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
            extra = {"setting": settings[name], "iterations": iterations[name], **summary}
            if name == "protonet":
                extra["training"] = PROTONET_NOTE
            if name == "pretrained":
                extra.update(training=family_of(params).pretrained_note, finetuning=finetuning)
            save_learner(learner, models / name, extra)
        write_json(models / paths.KINDS, kinds)
