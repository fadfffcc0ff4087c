"""The real pipeline: `dvc repro` in a temporary git repository on tiny settings."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from metahpo.evaluation.panels import learner_curve
from metahpo.learners import KINDS
from metahpo.learners.artifacts import load_learner
from metahpo.reporting.regression import fmt

from project import commit_all, copy_project, dvc, git, ran_stages, run, write_params

pytestmark = pytest.mark.e2e

STAGES = ["generate", "search", "train", "evaluate", "report"]
LEARNERS = ("tuned", "default", "pretrained")
POINT_SETS = ("grid", "query")  # the 100-point grid and the K random query points
FIGURES = ("adaptation", "kshot", "ood", "examples", "search", "cost", "objective", "evaluations", "training")
OUTPUTS = [
    "data/tasks/manifest.json",
    "data/tasks/meta_train.npz",
    "data/tasks/meta_val.npz",
    "data/tasks/meta_test.npz",
    "reports/search/trials.csv",
    "reports/search/best.json",
    "models/tuned/model.pt",
    "models/tuned/config.json",
    "models/default/model.pt",
    "models/default/config.json",
    "models/pretrained/model.pt",
    "reports/search/trial_seconds.csv",
    "reports/search/state.json",
    "reports/train/tuned/plots/metrics/meta_loss.tsv",
    "reports/train/pretrained/plots/metrics/val_grid_mse.tsv",
    "reports/train/timing.json",
    "reports/metrics.json",
    "reports/metrics_ci95.json",
    "reports/evaluation.json",
    *[
        f"reports/plots/sinusoid/by_step/{split}_{points}_mse.csv"
        for split in ("meta_test", "meta_ood")
        for points in POINT_SETS
    ],
    *[f"reports/plots/sinusoid/by_shots/meta_test_{points}_mse.csv" for points in POINT_SETS],
    *[f"reports/figures/{name}.png" for name in FIGURES],
    "reports/report.md",
]

# What a fresh clone's run must reproduce byte for byte.
IDENTICAL = [
    "reports/metrics.json",
    "reports/metrics_ci95.json",
    "reports/evaluation.json",
    "reports/search/trials.csv",
    "reports/search/best.json",
    "reports/plots/sinusoid/by_step/meta_test_grid_mse.csv",
    "reports/plots/sinusoid/by_shots/meta_test_query_mse.csv",
    "models/tuned/model.pt",
    "models/default/model.pt",
    "models/pretrained/model.pt",
    "models/tuned/config.json",
    "data/tasks/meta_train.npz",
    "data/tasks/meta_test.npz",
]


def project_params() -> dict:
    """The project's params: the tiny settings, with the default's search path (asha on rungs of 5 and 15), its
    whole space and its process pools."""
    from conftest import load_default_params, shrink

    default = load_default_params()
    params = shrink(default)
    params["search"].update(fidelity="asha", min_iterations=5, space=default["search"]["space"])
    params["search"]["workers"] = default["search"]["workers"]
    params["train"]["workers"] = default["train"]["workers"]
    return params


def _digests(path: Path) -> dict[str, str]:
    """SHA-256 of the file at ``path``, or of every file under it."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def first_run(root):
    """Where the project fixture keeps the files of ``IDENTICAL`` as its first run wrote them."""
    return root.with_name(root.name + "-first-run")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project after one full `dvc repro`, committed."""
    params = project_params()
    root = copy_project(tmp_path_factory.mktemp("project"), params)
    dvc(root, "config", "core.analytics", "false")
    commit_all(root, "tiny project")
    first = dvc(root, "repro")
    assert ran_stages(first) == STAGES
    for rel in IDENTICAL:  # as the first run wrote them, before the tests below change the project
        (first_run(root) / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, first_run(root) / rel)
    commit_all(root, "first run")
    return root


def test_every_output_exists_with_headline_metrics(project):
    for rel in OUTPUTS:
        assert (project / rel).is_file(), rel
    metrics = json.loads((project / "reports/evaluation.json").read_text())
    for learner in LEARNERS:
        for split in ("test", "ood"):
            for points in POINT_SETS:
                at_k = metrics[learner][split][points]["k10"]
                assert {"step0", "step1", "step3"} <= set(at_k)
                kind_of_split = "adaptation" if split == "test" else split
                curve = learner_curve("sinusoid", kind_of_split, learner, project / "reports/plots")
                assert curve.loc[1, f"{points}_mse"] == pytest.approx(at_k["step1"]["mse"], rel=1e-5)
                assert curve.loc[1, f"{points}_ci95"] == pytest.approx(at_k["step1"]["ci95"], rel=1e-5)
                assert at_k["step1"]["ci95"] > 0
        assert {"k5", "k10", "k20"} <= set(metrics[learner]["test"]["grid"])
    pretrained = json.loads((project / "models/pretrained/config.json").read_text())
    assert pretrained["training"].startswith("joint") and pretrained["finetuning"]["chosen_on"] == "meta_val"

    # Its own fine-tuning rate and steps, not the tuned learner's, are what evaluate adapts with.
    chosen = {k: pretrained["finetuning"][k] for k in ("algorithm", "inner_lr", "inner_steps")}
    assert {k: pretrained["learner"][k] for k in chosen} == chosen
    assert metrics["pretrained"]["inner_steps"] == chosen["inner_steps"]
    limit = metrics["limit"]
    for k in ("k5", "k10", "k20"):  # noise-free tasks: the true family fits K >= 2 points exactly
        assert limit["test"]["grid"][k]["mse"] < 1e-8 and limit["test"]["query"][k]["ci95"] >= 0
    assert limit["ood"]["grid"]["k10"]["mse"] < 1e-8
    # Paired on the same tasks: the mean difference is the difference of the headline means.
    paired, tasks = metrics["paired"], metrics["protocol"]["tasks"]
    assert set(paired) == {"default", "pretrained", "limit"}
    tuned = metrics["tuned"]["test"]["grid"]["k10"][f"step{metrics['tuned']['inner_steps']}"]["mse"]
    for name in ("default", "pretrained"):
        other = metrics[name]["test"]["grid"]["k10"][f"step{metrics[name]['inner_steps']}"]["mse"]
        assert paired[name]["mean"] == pytest.approx(tuned - other, rel=1e-9, abs=1e-12)
        assert paired[name]["ci95"] >= 0 and paired[name]["larger"] + paired[name]["smaller"] <= tasks
    assert paired["limit"]["mean"] == pytest.approx(tuned - limit["test"]["grid"]["k10"]["mse"], rel=1e-9)
    assert paired["limit"]["larger"] == tasks  # every task: the limit is exact


def test_the_headline_has_the_same_few_keys_whatever_the_setting_and_names_divergence(project):
    means = json.loads((project / "reports/metrics.json").read_text())
    cis = json.loads((project / "reports/metrics_ci95.json").read_text())
    full = json.loads((project / "reports/evaluation.json").read_text())
    per_learner = {"k5", "k10", "k20", "trained_steps", "steps3", "ood"}
    assert {name: set(row) for name, row in means.items()} == {
        **dict.fromkeys(LEARNERS, per_learner),
        "limit": {"k5", "k10", "k20", "ood"},
    }
    assert {name: set(row) for name, row in cis.items()} == {
        name: {f"{key}_ci95" for key in row} for name, row in means.items()
    }
    assert sum(len(row) for row in means.values()) <= 30
    for learner in LEARNERS:
        trained = full[learner]["inner_steps"]
        step = full[learner]["test"]["grid"]["k10"][f"step{trained}"]
        expected = "diverged" if step["mse"] is None else step["mse"]
        assert means[learner]["trained_steps"] == expected
        one_step = full[learner]["test"]["grid"]["k20"]["step1"]["mse"]
        assert means[learner]["k20"] == ("diverged" if one_step is None else one_step)
    shown = dvc(project, "metrics", "show", "--json")
    [workspace] = json.loads(shown.stdout).values()
    assert workspace["data"]["reports/metrics.json"]["data"] == means


def test_models_reload_with_weights_only(project):
    learner = load_learner(project / "models/tuned", torch.device("cpu"))
    best = json.loads((project / "reports/search/best.json").read_text())
    assert learner.config.algorithm == best["setting"]["algorithm"]


def test_second_repro_runs_nothing(project):
    again = dvc(project, "repro")
    assert ran_stages(again) == []
    status = dvc(project, "status")
    assert "up to date" in status.stdout


def test_where_the_work_runs_reruns_nothing(project):
    """Where trials run and how many learners train at once change no result, so no stage reruns."""
    params = project_params()
    params["search"].update(executor="dask", address=None)
    params["train"]["workers"] = 1
    params["evaluate"]["workers"] = 2
    write_params(project, params)
    try:
        assert "up to date" in dvc(project, "status").stdout
        # Scored two at a time, each learner in its own worker: the same bytes as one at a time, in this process.
        scored = ("reports/evaluation.json", "reports/metrics.json", "reports/metrics_ci95.json", "reports/plots")
        before = {rel: _digests(project / rel) for rel in scored}
        run(project, sys.executable, "stages/evaluate.py")
        assert {rel: _digests(project / rel) for rel in scored} == before
    finally:
        write_params(project, project_params())


def test_train_change_reruns_only_downstream_and_metrics_diff_shows_it(project):
    params = project_params()
    params["train"]["iterations"] = 30
    write_params(project, params)
    repro = dvc(project, "repro")
    assert ran_stages(repro) == ["train", "evaluate", "report"]
    commit_all(project, "longer training")
    diff = dvc(project, "metrics", "diff", "HEAD~1", "--json")
    changed = json.loads(diff.stdout)["reports/metrics.json"]
    assert "tuned.k10" in changed and changed["tuned.k10"]["diff"] != 0
    params_diff = json.loads(dvc(project, "params", "diff", "HEAD~1", "--json").stdout)
    change = params_diff["params.yaml"]["train.iterations"]
    assert (change["old"], change["new"]) == (20, 30)


def test_report_links_existing_figures_and_its_numbers_are_the_metrics(project):
    report = (project / "reports/report.md").read_text()
    links = re.findall(r"\]\((figures/[^)]+)\)", report)
    assert sorted(links) == sorted(f"figures/{name}.png" for name in FIGURES)
    assert all((project / "reports" / link).is_file() for link in links)
    metrics = json.loads((project / "reports/evaluation.json").read_text())
    for learner, label in (("tuned", "tuned"), ("default", "untuned (params.yaml defaults)")):
        headline_row = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        cells = re.findall(r"(\d+\.\d{3}) ± (\d+\.\d{3})", headline_row)
        expected = [
            (f"{s['mse']:.3f}", f"{s['ci95']:.3f}")
            for kind in ("grid", "query")
            for s in sorted_steps(metrics[learner]["test"][kind]["k10"])
        ]
        assert cells == expected
    assert "**published**" in report  # reference rows are labelled as such
    assert re.search(r"chosen setting [\d.,]+ M, untuned baseline [\d.,]+ M \([\d.]+x\)", report)
    timing = json.loads((project / "reports/train/timing.json").read_text())
    trained = pd.read_csv(project / "reports/search/trials.csv")["status"].isin(["ok", "stopped"]).sum()
    assert timing["tuned"]["predicted_seconds"] > 0 and timing["tuned"]["seconds"] > 0
    assert timing["from_trials"] == trained >= 3  # every trained trial's timing
    limit_rows = [line for line in report.splitlines() if line.startswith("| task limit")]
    assert len(limit_rows) == 1 + 1 + 2 + 1  # headline, paired, K-shot (grid and query), out of distribution


def test_the_report_sets_each_searched_kind_beside_the_tuned_learner(project):
    record = json.loads((project / "models/kinds.json").read_text())
    evaluation = json.loads((project / "reports/evaluation.json").read_text())
    assert record["compare_kinds"] is True and evaluation["kinds"] == record["kinds"]
    assert "maml_family" in record["kinds"] or "cnp" in record["kinds"]
    report = (project / "reports/report.md").read_text()
    assert "### Kinds of meta-learner side by side" in report
    best = json.loads((project / "reports/search/best.json").read_text())
    trials = pd.read_csv(project / "reports/search/trials.csv")
    drawn = trials["point"].map(lambda point: json.loads(point)["algorithm"])
    tuned_kind = next(kind for kind, members in KINDS.items() if best["setting"]["algorithm"] in members)
    # The tuned learner stands for its own kind, as the search's best trial; each kind counts its own trials.
    assert record["kinds"][tuned_kind]["learner"] == "tuned" and record["kinds"][tuned_kind]["trial"] == best["trial"]
    for kind, entry in record["kinds"].items():
        mine = drawn.isin(KINDS[kind])
        assert entry["trials_of_kind"] == mine.sum()  # 0 for a kind the few tiny trials never drew
        if entry["learner"] is None:  # no trial of the kind was scored: each one failed or was too costly
            assert not trials.loc[mine, "status"].isin(["ok", "stopped"]).any()
            continue
        assert trials.loc[trials["trial"] == entry["trial"], "status"].item() == entry["status"]
        assert (project / "models" / entry["learner"] / "model.pt").exists()
        row = next(line for line in report.splitlines() if f"`{entry['learner']}`:" in line)
        assert fmt(evaluation[entry["learner"]]["test"]["grid"]["k10"]["step1"]) in row
    # The kinds' stand-ins are in the report's table only: the headline and the plots keep their learners.
    assert list(json.loads((project / "reports/metrics.json").read_text())) == [*LEARNERS, "limit"]
    panel = pd.read_csv(project / "reports/plots/sinusoid/by_step/meta_test_grid_mse.csv")
    assert set(panel["learner"]) == {*LEARNERS, "limit"}


def sorted_steps(by_step: dict) -> list[dict]:
    return [by_step[k] for k in sorted(by_step, key=lambda s: int(s.removeprefix("step")))]


def test_plots_page_works_offline(project):
    dvc(project, "plots", "show", "--out", "plots_page")
    page = (project / "plots_page/index.html").read_text()
    assert "vegaEmbed" in page and "meta_test_grid_mse" in page and "training_loss" in page
    assert not re.search(r"<script[^>]+src=", page)


def test_every_dvc_plot_renders_with_data_and_a_finite_y_range(project):
    """Every panel of `dvc plots show --json` renders to PNG in-process and plots finite values; no warning."""
    import math

    import vl_convert

    shown = dvc(project, "plots", "show", "--json")
    assert "failed to load" not in shown.stdout + shown.stderr
    panels = json.loads(shown.stdout)["data"]
    assert len(panels) == 4 + 2 + 2  # by_step: meta_test and meta_ood, grid and query; by_shots: 2; loss; search
    for name, (plot,) in panels.items():
        spec = plot["content"]
        png = vl_convert.vegalite_to_png(json.dumps(spec))
        assert png.startswith(b"\x89PNG") and len(png) > 5_000, name
        values = spec["data"]["values"]
        y_field = next(f for f in ("mean", "meta_loss", "best_so_far") if f in values[0])
        ys = [float(v[y_field]) for v in values if v[y_field] not in ("", None)]
        assert ys and all(math.isfinite(y) for y in ys), name
        learners = {v.get("learner") for v in values} - {None}
        assert name.endswith(".tsv") or not learners or learners >= {"tuned", "default", "pretrained"}, name


def test_a_fresh_clone_gives_byte_identical_outputs(project, tmp_path):
    [commit] = git(project, "log", "--format=%H", "--grep=^tiny project$").stdout.split()
    git(tmp_path, "clone", "-q", str(project), "clone")
    clone = tmp_path / "clone"
    git(clone, "checkout", "-q", commit)  # the params and code, before any output was committed
    assert not (clone / "reports/metrics.json").exists()
    assert ran_stages(dvc(clone, "repro")) == STAGES
    for rel in IDENTICAL:
        assert (clone / rel).read_bytes() == (first_run(project) / rel).read_bytes(), rel
