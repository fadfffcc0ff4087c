"""The final training: at most train.iterations, the best meta_val weights kept, early stopping by patience."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from metahpo.learners.family import Regression
from metahpo.learners.metatrain import build_learner, meta_train
from metahpo.learners.settings import default_setting, learner_config, train_settings
from metahpo.learners.training import train_learner
from metahpo.tasks.sinusoid import TaskPool, generate_splits

from conftest import typed

CPU = torch.device("cpu")


@pytest.mark.parametrize(("patience", "trained"), [(2, 20), (0, 40)])
def test_the_best_validation_weights_are_kept_and_patience_stops_training(
    tiny_params, tmp_path, monkeypatch, patience, trained
):
    tiny_params["train"].update(iterations=40, log_every=5, patience=patience)
    params = typed(tiny_params)
    splits = generate_splits(params.tasks, 0)
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    values = iter([5.0, 4.0, 6.0, 7.0, 8.0, 9.0, 9.5, 9.9])  # best at the second validation (iteration 10)
    monkeypatch.setattr(Regression, "validation_metric", lambda self, *args: next(values))
    monkeypatch.chdir(tmp_path)
    setting = default_setting(params)
    learner, summary = train_learner("tuned", setting, params, pool, splits["meta_val"], CPU)
    assert summary == {"best_iteration": 10, "trained_iterations": trained}
    logged = pd.read_csv(tmp_path / "reports/train/tuned/plots/metrics/val_grid_mse.tsv", sep="\t")
    assert list(logged["step"]) == list(range(5, trained + 1, 5))
    # The kept weights are those after 10 iterations of the same run.
    reference = build_learner(learner_config(setting, params), params.seed, CPU)
    meta_train(reference, pool, train_settings(setting, params, 40), params.seed, stop_at=10)
    for name, value in reference.state_dict().items():
        assert torch.equal(learner.state_dict()[name], value)


def test_a_non_finite_validation_is_never_the_best(tiny_params, tmp_path, monkeypatch):
    tiny_params["train"].update(iterations=20, log_every=5, patience=0)
    params = typed(tiny_params)
    splits = generate_splits(params.tasks, 0)
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    values = iter([float("nan"), 4.0, 3.0, 5.0])
    monkeypatch.setattr(Regression, "validation_metric", lambda self, *args: next(values))
    monkeypatch.chdir(tmp_path)
    _, summary = train_learner("tuned", default_setting(params), params, pool, splits["meta_val"], CPU)
    assert summary == {"best_iteration": 15, "trained_iterations": 20}


def test_a_training_log_ends_when_another_learner_removed_the_shared_signal_file(tmp_path, monkeypatch):
    """Two learners end at once under `dvc exp run`: DVCLive's shared signal file is gone for one of them."""
    import dvclive.live

    from metahpo.learners.training import TrainingLog

    def removed_by_the_other(name):
        def cleanup():
            raise FileNotFoundError(2, "No such file or directory", str(tmp_path / ".dvc/tmp/exps/run" / name))

        return cleanup

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dvclive.live, "cleanup_dvclive_step_completed", removed_by_the_other("DVCLIVE_STEP_COMPLETED"))
    with TrainingLog("logs", dvcyaml=None, save_dvc_exp=False, report=None) as live:
        live.log_metric("loss", 1.0)
        live.next_step()
    assert (tmp_path / "logs/metrics.json").exists()
    monkeypatch.setattr(dvclive.live, "cleanup_dvclive_step_completed", removed_by_the_other("other"))
    with pytest.raises(FileNotFoundError), TrainingLog("logs2", dvcyaml=None, save_dvc_exp=False, report=None):
        pass


def test_a_compute_budget_trains_a_costlier_setting_fewer_iterations_and_the_baselines_as_many_as_tuned(
    tiny_params, tmp_path, monkeypatch
):
    from metahpo.learners.cost import final_iterations, setting_macs
    from metahpo.search.final_training import learner_iterations

    tiny_params["train"].update(iterations=40, log_every=5, compute=2.0)
    params = typed(tiny_params)
    untuned = default_setting(params)
    costly = {**untuned, "hidden": 120, "inner_steps": 3}
    cost, untuned_cost = setting_macs(costly, params), setting_macs(untuned, params)
    assert cost > 4 * untuned_cost
    assert final_iterations(untuned, params) == 40  # 2x the untuned compute, but never past train.iterations
    fewer = 80 * untuned_cost // cost  # the compute of 80 untuned iterations, in whole iterations of the costly one
    assert final_iterations(costly, params) == fewer
    settings = {"tuned": costly, "default": untuned, "pretrained": {**costly, "algorithm": "maml"}}
    assert learner_iterations(settings, params) == {"tuned": fewer, "default": 40, "pretrained": fewer}
    uncapped = typed({**tiny_params, "train": {**tiny_params["train"], "compute": None}})
    assert final_iterations(costly, uncapped) == 40
    # The training runs exactly that many iterations (its cosine schedule ends there).
    splits = generate_splits(params.tasks, 0)
    pool = TaskPool.from_split(splits["meta_train"], CPU)
    monkeypatch.chdir(tmp_path)
    _, summary = train_learner("tuned", costly, params, pool, splits["meta_val"], CPU, iterations=17)
    assert summary["trained_iterations"] == 17
