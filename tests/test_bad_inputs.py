"""Table of bad inputs across params, search spaces, task files, model files and the report's inputs.

Each case runs a real stage (in-process, through ``run_stage``) on a tiny project whose earlier
stages already ran, and asserts: exit code 2, an ``error:`` message naming the key or file, and no
output file created or modified.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from image_folders import huge_png, image_folder_params, make_flat

from metahpo.evaluation.protocol import evaluate_stage
from metahpo.params import read_params_file
from metahpo.reporting.report import report_stage
from metahpo.runtime import run_stage
from metahpo.search.driver import search_stage
from metahpo.search.final_training import train_stage
from metahpo.tasks.generate import generate_stage

from conftest import DELETE, set_dotted

STAGES = {
    "generate": generate_stage,
    "search": search_stage,
    "train": train_stage,
    "evaluate": evaluate_stage,
    "report": report_stage,
}


@pytest.fixture(scope="module")
def ready(tmp_path_factory, request):
    """A tiny project directory after generate, search, train and evaluate."""
    from conftest import load_default_params, shrink

    root = tmp_path_factory.mktemp("ready")
    (root / "params.yaml").write_text(yaml.safe_dump(shrink(load_default_params())))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for stage in ("generate", "search", "train", "evaluate"):
            run_stage(stage, STAGES[stage])
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file's hash, every symbolic link's target and every folder under ``root``, by path."""

    def state(p: Path) -> str:
        if p.is_symlink():
            return f"link to {os.readlink(p)}"
        return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"

    return {str(p.relative_to(root)): state(p) for p in root.rglob("*")}


# --- mutations: each takes the project root and breaks one thing -------------------------------


def params_edit(dotted: str, value, **more):
    """Set ``dotted`` (and each ``more`` key, with ``__`` for dots) in params.yaml; None deletes."""
    edits = {dotted: value, **{k.replace("__", "."): v for k, v in more.items()}}

    def apply(root: Path):
        params = read_params_file(root / "params.yaml")
        for key_path, new in edits.items():
            set_dotted(params, key_path, DELETE if new is None else new)
        (root / "params.yaml").write_text(yaml.safe_dump(params))

    return apply


def image_folder(mutate=lambda folders: None, classes: int = 8):
    """An image folder under data/raw/imgs with the tiny image_folder params, then ``mutate(class folders)``."""

    def apply(root: Path):
        folders = make_flat(root / "data/raw/imgs", classes=classes)
        mutate(folders)
        params = image_folder_params(read_params_file(root / "params.yaml"), "data/raw/imgs")
        (root / "params.yaml").write_text(yaml.safe_dump(params))

    return apply


def space(name: str, dim) -> callable:
    return params_edit(f"search.space.{name}", dim)


def write(rel: str, data: bytes | str):
    def apply(root: Path):
        path = root / rel
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return apply


def append(rel: str, data: str | bytes):
    def apply(root: Path):
        path = root / rel
        path.write_bytes(path.read_bytes() + (data if isinstance(data, bytes) else data.encode()))

    return apply


def replace_text(rel: str, old: str, new: str):
    """Replace the first ``old`` in a file's text (values no JSON or YAML writer would produce)."""

    def apply(root: Path):
        text = (root / rel).read_text()
        assert old in text, f"{old!r} not in {rel}"
        (root / rel).write_text(text.replace(old, new, 1))

    return apply


def laughs(levels: int = 9) -> str:
    """Billion-laughs YAML: ``levels`` anchors, each nine aliases of the one before."""
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def deep(levels: int = 3000) -> str:
    return "[" * levels + "]" * levels


def truncate(rel: str):
    def apply(root: Path):
        path = root / rel
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])

    return apply


def remove(rel: str):
    return lambda root: (root / rel).unlink()


def rewrite_split(name: str, change):
    """Change arrays of a split and re-vouch for them in the manifest (a consistent but wrong file)."""

    def apply(root: Path):
        path = root / "data/tasks" / f"{name}.npz"
        arrays = dict(np.load(path))
        change(arrays)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        manifest = json.loads((root / "data/tasks/manifest.json").read_text())
        manifest["splits"][name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (root / "data/tasks/manifest.json").write_text(json.dumps(manifest))

    return apply


def edit_json(rel: str, change):
    def apply(root: Path):
        data = json.loads((root / rel).read_text())
        change(data)
        (root / rel).write_text(json.dumps(data))

    return apply


def save_weights(rel: str, change):
    def apply(root: Path):
        state = torch.load(root / rel, weights_only=True)
        change(state)
        torch.save(state, root / rel)

    return apply


def link_out(path: Path) -> None:
    """Move ``path`` out of the image folder, to the project root, and leave a symbolic link to it."""
    root = next(p for p in path.parents if (p / "params.yaml").exists())
    outside = root / f"outside-{path.name}"
    path.rename(outside)
    path.symlink_to(outside.resolve(), target_is_directory=outside.is_dir())


def kinds_name(name: str):
    """``models/kinds.json`` naming ``name`` as the learner of the maml kind."""
    return edit_json("models/kinds.json", lambda k: _set(k["kinds"], "maml", {"learner": name}))


def learner_linked_out(root: Path) -> None:
    """A learner folder outside ``models/``, reached through a symbolic link that kinds.json names."""
    shutil.copytree(root / "models/tuned", root / "outside-tuned")
    (root / "models/best_out").symlink_to((root / "outside-tuned").resolve(), target_is_directory=True)
    kinds_name("best_out")(root)


def write_dup_nested(root: Path, section: str, key: str) -> None:
    """Give ``section.key`` twice: once as written, once more at the top of the section."""
    text = (root / "params.yaml").read_text()
    value = read_params_file(root / "params.yaml")[section][key]
    (root / "params.yaml").write_text(text.replace(f"{section}:\n", f"{section}:\n  {key}: {value}\n", 1))


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def _set(d, k, v):
    d[k] = v


def _at(d, dotted):
    for key in dotted.split("."):
        d = d[key]
    return d


def _drop(d, dotted):
    *parents, last = dotted.split(".")
    for key in parents:
        d = d[key]
    del d[last]


def csv_edit(rel: str, change, sep: str = ","):
    """Rewrite a table of the report's inputs through pandas."""
    import pandas as pd

    def apply(root: Path):
        table = pd.read_csv(root / rel, sep=sep)
        change(table)
        table.to_csv(root / rel, sep=sep, index=False)

    return apply


SHOTS_PANEL = "reports/plots/sinusoid/by_shots/meta_test_grid_mse.csv"
STEPS_PANEL = "reports/plots/sinusoid/by_step/meta_ood_query_mse.csv"

CASES = [
    # params
    ("generate", params_edit("tasks.shots", 0), "tasks.shots"),
    ("generate", params_edit("tasks.phase", [3.0, 1.0]), "tasks.phase"),
    ("generate", params_edit("tasks", None), "tasks: missing"),
    ("generate", params_edit("seeed", 1), "seeed: unknown key"),
    ("generate", append("params.yaml", b"# caf\xe9 in Latin-1\n"), "params.yaml: not UTF-8"),
    ("generate", append("params.yaml", "seed: 7\n"), "seed: given twice"),
    ("search", lambda root: write_dup_nested(root, "search", "n_calls"), "search.n_calls: given twice"),
    ("search", params_edit("meta.algorithm", "reptile"), "meta.algorithm"),
    ("search", params_edit("meta.inner_lr", -0.01), "meta.inner_lr"),
    ("search", params_edit("search.n_calls", 0), "search.n_calls"),
    ("search", params_edit("search.acq_func", "UCB"), "search.acq_func"),
    ("search", params_edit("threads", 0), "threads"),
    ("search", params_edit("search.workers", 1024), "search.workers: 1024 worker processes"),
    ("search", params_edit("search.workers", 1000, search__executor="dask"), "search.workers: 1000 worker"),
    ("train", params_edit("train.log_every", 0), "train.log_every"),
    ("train", params_edit("model.layers", 100), "model.layers"),
    ("train", params_edit("train.finetune.lr", [0.1, 0.01]), "train.finetune.lr: expected [low, high] with 0 <"),
    ("train", params_edit("train.finetune.lr_points", 0), "train.finetune.lr_points: expected an integer >= 1"),
    ("train", params_edit("train.finetune.max_steps", 4), "train.finetune.max_steps: expected <= evaluate.max_steps"),
    ("evaluate", params_edit("evaluate.task_chunk", 0), "evaluate.task_chunk"),
    ("train", params_edit("meta.meta_batch_size", 10_000, model__hidden=2048, meta__inner_steps=10), "GiB per meta"),
    ("search", params_edit("model.representation", 0), "model.representation: expected an integer >= 1"),
    ("search", params_edit("meta.rule_hidden", 2000), "meta.rule_hidden: expected an integer"),
    ("search", params_edit("meta.algorithm", "cnp", model__arch="conv"), "meta.algorithm: cnp needs model.arch: mlp"),
    (
        "train",
        params_edit(
            "meta.algorithm", "cnp", model__representation=4096, model__hidden=4096, meta__meta_batch_size=10_000
        ),
        "algorithm=cnp, meta_batch_size=10000",
    ),
    (
        "search",
        params_edit(
            "search.space.algorithm",
            {"type": "categorical", "values": ["maml", "learned_optimizer"]},
            meta__rule_hidden=1024,
            meta__meta_batch_size=50,
            search__workers=2,
        ),
        "rule_hidden) or search.workers: algorithm=learned_optimizer, meta_batch_size=50",
    ),
    # params.yaml that would hang or crash a YAML reader
    ("generate", append("params.yaml", laughs()), "lol5: its aliases expand to more than 100,000 values"),
    ("search", append("params.yaml", "zz: &r [1, *r]\n"), "zz[1]: an alias to itself or a key above it"),
    ("train", append("params.yaml", f"zz: {deep()}\n"), "params.yaml: nested more than 100 levels deep"),
    ("evaluate", replace_text("params.yaml", "seed: 0", "seed: " + "1" * 5000), "seed: an integer of 5,000 digits"),
    ("report", append("params.yaml", "zz:\n  a: 1\n  a: 2\n"), "zz.a: given twice"),
    # search spaces
    ("search", params_edit("search.space", {}), "search.space"),
    ("search", space("inner_lr", {"type": "real", "low": 1.0, "high": 0.1, "prior": "log-uniform"}), "inner_lr"),
    ("search", space("inner_lr", {"type": "real", "low": -1.0, "high": 0.1, "prior": "uniform"}), "inner_lr.low"),
    ("search", space("algorithm", {"type": "categorical", "values": []}), "search.space.algorithm.values"),
    ("search", space("depth", {"type": "integer", "low": 1, "high": 3, "prior": "uniform"}), "search.space.depth"),
    ("search", space("hidden", {"type": "integer", "low": 8, "high": 4096, "prior": "cubic"}), "hidden.prior"),
    ("search", space("rule_hidden", {"type": "integer", "low": 4, "high": 40, "prior": "uniform"}), "read only by"),
    ("search", space("rule_hidden", {"type": "integer", "low": 0, "high": 8, "prior": "uniform"}), "rule_hidden.low"),
    ("search", space("inner_steps", {"type": "integer", "low": 1, "high": 60, "prior": "uniform"}), "inner_steps.high"),
    (
        "search",
        params_edit(
            "search.space.hidden",
            {"type": "integer", "low": 8, "high": 4096, "prior": "uniform"},
            search__space__meta_batch_size={"type": "integer", "low": 8, "high": 2000, "prior": "uniform"},
        ),
        "search.space",
    ),
    # classification settings and image folders
    ("generate", params_edit("tasks.family", "image_folder"), "tasks.root: required"),
    (
        "generate",
        params_edit("tasks.family", "image_folder", tasks__root="/srv/images", tasks__image_size=8),
        "data/raw",
    ),
    ("generate", params_edit("tasks.rotations", [0, 45]), "tasks.rotations"),
    ("generate", params_edit("tasks.class_splits.meta_train", 0.9, tasks__family="digits"), "tasks.class_splits"),
    ("search", params_edit("model.arch", "conv"), "model.arch"),
    ("search", params_edit("search.objective", "accuracy"), "search.objective"),
    ("search", params_edit("search.repeats", 2, search__median_stop__enabled=True), "search.repeats"),
    ("search", params_edit("search.class_folds", 2), "search.class_folds"),
    ("search", params_edit("search.fidelity", "hyperband", search__min_iterations=15), "search.min_iterations"),
    ("search", params_edit("search.fidelity", "successive_halving", search__eta=1), "search.eta"),
    ("search", params_edit("search.fidelity", "bohb"), "search.fidelity"),
    ("search", params_edit("search.fidelity", "asha", search__method="forest"), "search.method: forest does not run"),
    ("search", params_edit("search.fidelity_unit", "flops"), "search.fidelity_unit"),
    (
        "search",
        params_edit("search.fidelity_unit", "compute", search__fidelity="none"),
        "search.fidelity_unit: compute",
    ),
    ("search", params_edit("search.max_cost", -1), "search.max_cost"),
    ("search", params_edit("search.tls", {"ca_file": "ca.pem", "cert": "c.pem", "key": "k.pem"}), "search.tls"),
    (
        "search",
        params_edit(
            "search.tls", {"ca_file": "params.yaml", "cert": "params.yaml", "key": "no.pem"}, search__executor="dask"
        ),
        "search.tls.key: no.pem is not a file",
    ),
    ("search", params_edit("search.tls", {"ca_file": "params.yaml"}, search__executor="dask"), "search.tls: expected"),
    ("search", params_edit("search.max_cost", 0.5, search__start_from_default=True), "search.max_cost: 0.5 is below"),
    ("search", params_edit("search.max_cost", 0.01), "search.max_cost: 0.01x the untuned setting's estimated cost"),
    (
        "search",
        params_edit("search.fidelity", "hyperband", search__median_stop__enabled=True, search__min_iterations=5),
        "search.median_stop.enabled",
    ),  # fmt: skip
    ("train", params_edit("train.patience", -1), "train.patience"),
    ("train", params_edit("train.compare_kinds", "yes"), "train.compare_kinds: expected true or false"),
    ("search", params_edit("search.start_from_default", True, meta__inner_lr=5.0), "meta.inner_lr = 5.0"),
    ("generate", image_folder(lambda f: (f[2] / "1.png").write_bytes(b"\x89PNG broken")), "class2/1.png"),
    ("generate", image_folder(lambda f: (f[0].parent / "no_images").mkdir()), "class 'no_images' has no images"),
    ("generate", image_folder(classes=2), "fewer than tasks.ways"),
    ("generate", image_folder(lambda f: link_out(f[3] / "2.png")), "class3/2.png: a symbolic link out of"),
    ("generate", image_folder(lambda f: link_out(f[0].parent)), "data/raw/imgs: a symbolic link (tasks.root)"),
    ("generate", image_folder(lambda f: [p.unlink() for p in sorted(f[5].glob("*.png"))[2:]]), "class 'class5'"),
    ("generate", image_folder(lambda f: huge_png(f[4] / "huge.png")), "class4/huge.png: image too large"),
    ("generate", image_folder(lambda f: (f[6] / "loop").symlink_to(f[6] / "loop")), "class6/loop: a symbolic link"),
    ("generate", image_folder(lambda f: (f[1] / "loop").symlink_to(f[1])), "class1/loop: a symbolic link to a folder"),
    ("generate", image_folder(lambda f: (f[7] / "sub").mkdir()), "class7/sub: a folder inside class folder 'class7'"),
    # task files
    ("evaluate", params_edit("tasks.eval_shots", [1, 2, 50]), "tasks.eval_shots is [1, 2, 50], but"),
    ("search", params_edit("seed", 7), "seed is 7, but data/tasks/manifest.json was generated with 0"),
    ("train", params_edit("tasks.amplitude", [0.5, 2.0]), "tasks.amplitude is [0.5, 2.0], but"),
    ("search", remove("data/tasks/manifest.json"), "data/tasks/manifest.json"),
    ("search", write("data/tasks/manifest.json", "{oops"), "data/tasks/manifest.json"),
    ("search", truncate("data/tasks/meta_train.npz"), "data/tasks/meta_train.npz"),
    ("search", remove("data/tasks/meta_val.npz"), "data/tasks/meta_val.npz"),
    ("evaluate", write("data/tasks/meta_test.npz", b"PK\x03\x04garbage"), "data/tasks/meta_test.npz"),
    ("train", rewrite_split("meta_train", lambda a: _set(a, "y", a["y"].astype(np.float64))), "meta_train.npz"),
    ("train", rewrite_split("meta_val", lambda a: _set(a, "grid_y", a["grid_y"][:, :5])), "meta_val.npz"),
    ("evaluate", rewrite_split("meta_test", lambda a: a["support_y"].fill(np.inf)), "meta_test.npz"),
    ("evaluate", rewrite_split("meta_test", lambda a: a.pop("query_x")), "meta_test.npz"),
    # model files and the search result
    ("evaluate", remove("models/tuned/model.pt"), "models/tuned/model.pt"),
    ("evaluate", remove("models/kinds.json"), "models/kinds.json: missing"),
    (
        "evaluate",
        edit_json("models/kinds.json", lambda k: _set(k, "kinds", [])),
        "models/kinds.json: kinds: expected a JSON object, got list",
    ),
    ("evaluate", truncate("models/default/model.pt"), "models/default/model.pt"),
    ("evaluate", lambda root: kinds_name(str((root / "models/tuned").resolve()))(root), "kinds.maml.learner"),
    ("evaluate", kinds_name("../models/tuned"), "models/kinds.json: kinds.maml.learner: '../models/tuned' is not"),
    ("evaluate", kinds_name(".."), "kinds.maml.learner"),
    ("evaluate", learner_linked_out, "models/kinds.json: kinds.maml.learner: 'best_out' is not an entry of models/"),
    (
        "report",
        edit_json("reports/evaluation.json", lambda e: _set(e, "kinds", {"cnp": {"learner": "../../params.yaml"}})),
        "reports/evaluation.json: kinds.cnp.learner",
    ),
    ("report", edit_json("reports/evaluation.json", lambda e: _set(e, "kinds", {"cnp": 3})), "evaluation.json: kinds"),
    ("evaluate", write("models/tuned/model.pt", pickle.dumps(Evil())), "models/tuned/model.pt"),
    ("evaluate", write("models/tuned/config.json", "not json"), "models/tuned/config.json"),
    ("evaluate", edit_json("models/tuned/config.json", lambda c: _set(c["learner"], "algorithm", "x")), "config.json"),
    ("evaluate", edit_json("models/default/config.json", lambda c: _set(c["learner"], "hidden", 7)), "model.pt"),
    ("evaluate", save_weights("models/tuned/model.pt", lambda s: s["weights.w0"].fill_(float("nan"))), "model.pt"),
    (
        "evaluate",
        save_weights("models/tuned/model.pt", lambda s: _set(s, "weights.w0", s["weights.w0"].double())),
        "pt",
    ),
    ("train", write("reports/search/best.json", "[]"), "reports/search/best.json"),
    ("train", edit_json("reports/search/best.json", lambda b: _set(b["setting"], "inner_lr", -1)), "best.json"),
    # JSON inputs with the wrong structure, or that would crash a JSON reader
    ("search", edit_json("data/tasks/manifest.json", lambda m: _set(m, "splits", list(m["splits"]))), "splits: exp"),
    ("train", edit_json("data/tasks/manifest.json", lambda m: _set(m["splits"]["meta_val"], "sha256", 5)), "sha256"),
    (
        "evaluate",
        edit_json("data/tasks/manifest.json", lambda m: _set(m["splits"]["meta_test"]["arrays"], "support_x", {})),
        "manifest.json: splits.meta_test.arrays.support_x: expected a list",
    ),
    ("search", edit_json("data/tasks/manifest.json", lambda m: _set(m, "seed", float("inf"))), "seed: inf is not a"),
    ("evaluate", replace_text("models/kinds.json", '"trials_of_kind": 3', '"trials_of_kind": ' + "1" * 5000), "digits"),
    ("evaluate", write("models/kinds.json", f'{{"kinds": {deep()}}}'), "kinds.json: not valid JSON (nested more"),
    ("evaluate", edit_json("models/kinds.json", lambda k: _set(k["kinds"]["maml_family"], "learner", 5)), "learner"),
    ("evaluate", edit_json("models/tuned/config.json", lambda c: _set(c["learner"], "inner_lr", float("nan"))), "nan"),
    ("evaluate", replace_text("models/tuned/config.json", '"hidden": ', '"hidden": ' + "7" * 4000), "digits (at most"),
    ("train", edit_json("reports/search/best.json", lambda b: _set(b, "trial", 999)), "trial 999 is not in reports/"),
    ("report", edit_json("reports/search/best.json", lambda b: _set(b, "trial", 999)), "best.json: trial 999 is not"),
    ("train", edit_json("reports/search/best.json", lambda b: _set(b, "trial", "2")), "best.json: trial: expected"),
    ("train", edit_json("reports/search/best.json", lambda b: _set(b, "point", [[[0]] * 2] * 2)), "point: expected"),
    ("train", write("reports/search/best.json", f'{{"point": {deep(150)}}}'), "best.json: nested more than 100"),
    # values a float32 task array or the squared error cannot hold, and sizes nothing can allocate
    ("generate", params_edit("tasks.amplitude", [0.1, 1.0e39]), "tasks.amplitude: expected values within"),
    ("generate", params_edit("tasks.x_range", [-1.0e7, 5.0]), "tasks.x_range: expected values within"),
    ("generate", params_edit("tasks.ood.phase", [0.0, float("inf")]), "tasks.ood.phase"),
    ("generate", params_edit("tasks.splits.meta_train", 10_000_000, tasks__train_points=10_000), "tasks.splits, "),
    (
        "generate",
        params_edit("tasks.family", "digits", tasks__ways=1000, tasks__splits__meta_test=10_000_000),
        "tasks.splits, tasks.ways",
    ),
    (
        "search",
        params_edit(
            "search.method",
            "grid",
            search__grid_points=100,
            search__space__outer_lr={"type": "real", "low": 0.0001, "high": 0.03, "prior": "log-uniform"},
        ),
        "search.grid_points: 100 values",
    ),
    # a search result outside the search space
    ("train", edit_json("reports/search/best.json", lambda b: _set(b["setting"], "inner_lr", 0.9)), "outside"),
    ("train", edit_json("reports/search/best.json", lambda b: _set(b["setting"], "layers", 5)), "setting.layers"),
    ("train", params_edit("search.space.algorithm", {"type": "categorical", "values": ["anil"]}), "not one of"),
    # model configs of another task family, or with sizes nothing can allocate
    ("evaluate", edit_json("models/tuned/config.json", lambda c: _set(c["learner"], "loss", "cross_entropy")), "loss"),
    (
        "evaluate",
        edit_json("models/default/config.json", lambda c: _set(c["learner"], "algorithm", "protonet")),
        "learner.algorithm protonet does not apply",
    ),
    ("evaluate", edit_json("models/tuned/config.json", lambda c: _set(c["learner"], "arch", "conv")), "learner.arch"),
    (
        "evaluate",
        edit_json("models/tuned/config.json", lambda c: c["learner"].update(hidden=4096, layers=16)),
        "model.pt: does not match",
    ),
    # the report stage's inputs
    ("report", truncate("reports/evaluation.json"), "reports/evaluation.json: not valid JSON"),
    ("report", edit_json("reports/evaluation.json", lambda m: _drop(m, "tuned.test")), "has no entry tuned.test"),
    ("report", edit_json("reports/evaluation.json", lambda m: _set(m["default"], "inner_steps", [1])), "inner_steps: "),
    ("report", edit_json("models/tuned/config.json", lambda c: c.pop("setting")), "config.json: has no entry setting"),
    (
        "report",
        edit_json("reports/evaluation.json", lambda m: _set(_at(m, "tuned.test.grid.k10.step1"), "mse", float("nan"))),
        "reports/evaluation.json: tuned.test.grid.k10.step1.mse: nan is not a finite number",
    ),
    (
        "report",
        edit_json("reports/evaluation.json", lambda m: _set(_at(m, "tuned.test.grid.k10.step1"), "mse", "0.1")),
        "reports/evaluation.json: tuned.test.grid.k10.step1.mse: expected a number or null, got '0.1'",
    ),
    (
        "report",
        edit_json("reports/evaluation.json", lambda m: _set(_at(m, "default.test.grid.k10"), "stepX", 0.1)),
        "default.test.grid.k10.stepX: not a step",
    ),
    (
        "report",
        edit_json("reports/evaluation.json", lambda m: _set(m["kinds"]["maml_family"], "iterations", "many")),
        "evaluation.json: kinds.maml_family.iterations: expected an integer",
    ),
    (
        "report",
        edit_json("reports/evaluation.json", lambda m: _set(m["paired"]["default"], "ci95", "wide")),
        "reports/evaluation.json: paired.default.ci95: expected a number or null, got 'wide'",
    ),
    ("report", edit_json("reports/evaluation.json", lambda m: m.pop("paired")), "evaluation.json: has no entry paired"),
    ("report", replace_text("reports/evaluation.json", '"mse": ', '"mse": 1e999, "was": '), "inf is not a finite"),
    ("report", write("reports/evaluation.json", f'{{"tuned": {deep(101)}}}'), "evaluation.json: nested more than"),
    (
        "report",
        edit_json("models/pretrained/config.json", lambda c: _set(c["finetuning"], "inner_lr", "0.01")),
        "models/pretrained/config.json: finetuning.inner_lr: expected a number",
    ),
    (
        "report",
        csv_edit("reports/search/trials.csv", lambda t: _set(t, "point", '{"inner_lr": ' + deep(2000)[1:-1] + "}")),
        "row 2: rungs or point",
    ),
    (
        "report",
        edit_json("reports/evaluation.json", lambda e: _set(e, "kinds", {"cnp": {"learner": "best_cnp"}})),
        "models/best_cnp/config.json: missing",
    ),
    ("report", edit_json("models/default/config.json", lambda c: _set(c["setting"], "hidden", 0)), "setting.hidden"),
    ("report", edit_json("models/tuned/config.json", lambda c: _set(c["learner"], "outputs", 5)), "learner.outputs"),
    ("report", append("reports/search/trials.csv", '1,"unclosed\n'), "reports/search/trials.csv"),
    ("report", csv_edit("reports/search/trials.csv", lambda t: t.pop("told")), "no column 'told'"),
    ("report", csv_edit("reports/search/trials.csv", lambda t: _set(t, "point", "{}")), "row 2: rungs or point"),
    ("report", remove("reports/search/best.json"), "reports/search/best.json: missing"),
    ("report", csv_edit(f"{SHOTS_PANEL}", lambda t: t.pop("mean")), "by_shots/meta_test_grid_mse.csv: no column"),
    ("report", write(f"{STEPS_PANEL}", "learner,step,mean,ci95\n"), "meta_ood_query_mse.csv: no rows"),
    (
        "report",
        csv_edit(f"{SHOTS_PANEL}", lambda t: t.drop(t.index[t.learner == "pretrained"], inplace=True)),
        "no rows for",
    ),
    ("report", remove("reports/train/tuned/plots/metrics/meta_loss.tsv"), "meta_loss.tsv: missing"),
    (
        "report",
        csv_edit("reports/train/default/plots/metrics/val_grid_mse.tsv", lambda t: _set(t, "val_grid_mse", "x"), "\t"),
        "val_grid_mse.tsv: column",
    ),
]


@pytest.mark.parametrize(
    ("stage", "breaks", "named"), CASES, ids=[f"{i:02d}-{c[0]}-{c[2]}"[:50] for i, c in enumerate(CASES)]
)
def test_bad_input_is_refused_before_any_work(ready, tmp_path, monkeypatch, capsys, stage, breaks, named):
    root = tmp_path / "project"
    shutil.copytree(ready, root)
    breaks(root)
    before = snapshot(root)
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as exit_info:
        run_stage(stage, STAGES[stage])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.startswith("error: ") and named in err, err
    assert "unpickled!" not in capsys.readouterr().out
    assert snapshot(root) == before


def test_cases_are_distinct_and_cover_every_stage(ready, tmp_path):
    """No two cases break the project the same way for the same stage, and every stage is tried."""
    broken = set()
    for i, (stage, breaks, _) in enumerate(CASES):
        root = tmp_path / str(i)
        shutil.copytree(ready, root)
        breaks(root)
        state = tuple(sorted(snapshot(root).items()))
        assert (stage, state) not in broken, f"case {i} repeats an earlier case"
        broken.add((stage, state))
    assert {stage for stage, _, _ in CASES} == set(STAGES)
