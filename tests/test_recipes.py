"""Named recipes (``python -m metahpo.recipes NAME``) and Omniglot's official zips through ``dvc import-url``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from image_folders import image_folder_params, make_omniglot

from metahpo.errors import ConfigError
from metahpo.params import validate
from metahpo.recipes import apply_recipe, load_recipe, recipe_names

from project import ROOT, commit_all, copy_project, dvc, env_for, ran_stages

RECIPES = ROOT / "recipes"
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def dotted(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


def comments(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


@pytest.fixture()
def workdir(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(RECIPES, tmp_path / "recipes")
    return tmp_path


def test_the_named_recipes_exist():
    assert {"sinusoid", "digits", "omniglot", "omniglot-gpu", "images"} <= set(recipe_names(RECIPES))


@pytest.mark.parametrize("name", recipe_names(RECIPES))
def test_a_recipe_writes_its_values_and_keeps_every_comment(workdir, name):
    before = (workdir / "params.yaml").read_text()
    apply_recipe(name, [], workdir / "params.yaml", workdir / "recipes")
    after = (workdir / "params.yaml").read_text()
    params = yaml.safe_load(after)
    assert validate(params) == []
    for key, value in load_recipe(name, RECIPES).items():
        assert dotted(params, key) == value, key
    assert comments(after) == comments(before)


def test_sinusoid_undoes_every_other_recipe(workdir):
    """The defaults recipe sets back every key another recipe sets, to its committed value."""
    defaults = load_recipe("sinusoid", RECIPES)
    for name in recipe_names(RECIPES):
        assert set(load_recipe(name, RECIPES)) <= set(defaults), name
    assert all(dotted(DEFAULTS, key) == value for key, value in defaults.items())
    for name in recipe_names(RECIPES):
        apply_recipe(name, [], workdir / "params.yaml", workdir / "recipes")
        apply_recipe("sinusoid", [], workdir / "params.yaml", workdir / "recipes")
        assert yaml.safe_load((workdir / "params.yaml").read_text()) == DEFAULTS, name


def test_overrides_stack_on_the_recipe(workdir):
    changed = apply_recipe("images", ["tasks.root=data/raw/letters", "tasks.eval_shots=[1, 2]"],
                           workdir / "params.yaml", workdir / "recipes")  # fmt: skip
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    assert params["tasks"]["root"] == "data/raw/letters" and params["tasks"]["eval_shots"] == [1, 2]
    assert changed["tasks.root"] == (None, "data/raw/letters") and params["model"]["arch"] == "conv"


@pytest.mark.parametrize(
    ("name", "overrides", "named"),
    [
        ("nosuch", [], "recipes/nosuch.yaml: no such recipe (known: "),
        ("images", ["tasks.shots=0"], "recipe images: tasks.shots: expected an integer >= 1"),
        ("images", ["tasks.nosuch=1"], "override: tasks.nosuch: no such key in params.yaml"),
        ("images", ["tasks.root.deeper=1"], "override: tasks.root.deeper: tasks.root is not a section"),
        ("images", ["tasks.root"], "'tasks.root': expected key=value"),
        ("images", ["tasks.root=[1,"], "'tasks.root=[1,': the value is not valid YAML"),
        ("broken", [], "recipes/broken.yaml: expected a mapping of dotted keys"),
        ("badyaml", [], "recipes/badyaml.yaml: not valid YAML"),
        ("badkey", [], "recipes/badkey.yaml: model.nosuch: no such key in params.yaml"),
    ],
)
def test_a_bad_recipe_or_override_is_one_line_and_writes_nothing(workdir, monkeypatch, capsys, name, overrides, named):
    (workdir / "recipes" / "broken.yaml").write_text("- a list\n")
    (workdir / "recipes" / "badyaml.yaml").write_text("tasks.shots: [1\n")
    (workdir / "recipes" / "badkey.yaml").write_text("model.nosuch: 1\n")
    before = (workdir / "params.yaml").read_bytes()
    with pytest.raises(ConfigError, match=re.escape(named)):
        apply_recipe(name, overrides, workdir / "params.yaml", workdir / "recipes")
    assert (workdir / "params.yaml").read_bytes() == before
    monkeypatch.chdir(workdir)
    from metahpo.recipes import main

    assert main([name, *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and err.count("\n") == 1
    assert (workdir / "params.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["search.space.algorithm.values=[maml, nope]"], "search.space.algorithm.values[1]: expected one of maml, "),
        (["meta.algorithm=reptile"], "meta.algorithm: expected one of maml, "),
        (["search.method=grid", "search.fidelity=asha"], "search.method: grid does not run with search.fidelity: asha"),
    ],
)
def test_the_command_checks_the_names_and_rules_of_the_domain_packages_and_writes_nothing(workdir, overrides, named):
    """The command checks what ``metahpo.search`` registers (names, and the rules that read them), as the stages do."""
    before, files = (workdir / "params.yaml").read_bytes(), sorted(workdir.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "metahpo.recipes", "sinusoid", *overrides], cwd=workdir,
                          env=env_for(ROOT), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: recipe sinusoid: {named}") and proc.stderr.count("\n") == 1, proc.stderr
    assert (workdir / "params.yaml").read_bytes() == before and sorted(workdir.rglob("*")) == files


def test_the_command_writes_a_registered_name_it_accepts(workdir):
    proc = subprocess.run([sys.executable, "-m", "metahpo.recipes", "sinusoid", "meta.algorithm=fomaml"],
                          cwd=workdir, env=env_for(ROOT), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "meta.algorithm: 'maml' -> 'fomaml'" in proc.stdout
    assert yaml.safe_load((workdir / "params.yaml").read_text())["meta"]["algorithm"] == "fomaml"


# --- through DVC -------------------------------------------------------------------------------------


def omniglot_zip(folder: Path, dest: Path, changed: bool = False) -> Path:
    """A tiny Omniglot-layout zip under the official zips' top folder (one image altered if ``changed``)."""
    make_omniglot(folder, alphabets=2, characters=4, per_class=6)
    if changed:
        (folder / "alphabet1/character2/3.png").write_bytes((folder / "alphabet0/character0/0.png").read_bytes())
    dest.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(dest, "w") as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, "images_background/" + path.relative_to(folder).as_posix())
    return dest


@pytest.mark.e2e
def test_an_imported_zip_runs_through_dvc_repro_and_an_update_reruns_generate(tmp_path):
    """``dvc import-url`` of a local zip (as of Omniglot's official URL), read in place by ``dvc repro``."""
    from conftest import load_default_params, shrink

    upstream = omniglot_zip(tmp_path / "made", tmp_path / "upstream" / "images_background.zip")
    params = image_folder_params(shrink(load_default_params()), "data/raw/omniglot")
    root = copy_project(tmp_path / "project", params)
    dvc(root, "config", "core.analytics", "false")
    (root / "data/raw/omniglot").mkdir()
    dvc(root, "import-url", str(upstream), "data/raw/omniglot/images_background.zip")
    record = yaml.safe_load((root / "data/raw/omniglot/images_background.zip.dvc").read_text())
    assert record["deps"][0]["path"] == str(upstream) and record["frozen"] is True
    commit_all(root, "Omniglot background zip, imported")
    assert ran_stages(dvc(root, "repro")) == ["generate", "search", "train", "evaluate", "report"]
    manifest = json.loads((root / "data/tasks/manifest.json").read_text())
    classes = {name for split in manifest["splits"].values() for name in split["classes"]}
    assert len(classes) == 16 and "alphabet0/character0" in classes and "alphabet1/character3@rot090" in classes
    sources = [set(manifest["splits"][s]["sources"]) for s in ("meta_train", "meta_val", "meta_test")]
    assert [len(s) for s in sources] == [4, 2, 2] and not (sources[0] & sources[2] or sources[1] & sources[2])
    assert "changed" not in dvc(root, "status").stdout
    # The drawers' zip changes upstream: `dvc update` brings it in and generate, then the rest, is stale.
    omniglot_zip(tmp_path / "made2", upstream, changed=True)
    assert "changed" not in dvc(root, "status").stdout  # nothing is fetched unless asked
    dvc(root, "update", "data/raw/omniglot/images_background.zip.dvc")
    status = dvc(root, "status").stdout
    assert re.search(r"generate:\s*\n\s*changed deps:\s*\n\s*modified:\s*data/raw", status), status


@pytest.mark.e2e
def test_a_recipe_selected_in_one_command_is_what_the_stages_read(tmp_path):
    root = copy_project(tmp_path / "project")
    dvc(root, "config", "core.analytics", "false")
    commit_all(root, "defaults")
    proc = subprocess.run([sys.executable, "-m", "metahpo.recipes", "digits"], cwd=root, env=env_for(root),
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert "tasks.family: 'sinusoid' -> 'digits'" in proc.stdout
    diff = json.loads(dvc(root, "params", "diff", "--json").stdout)["params.yaml"]
    assert set(diff) == {k for k, v in load_recipe("digits", RECIPES).items() if dotted(DEFAULTS, k) != v}
    assert ran_stages(dvc(root, "repro", "generate")) == ["generate"]
    manifest = json.loads((root / "data/tasks/manifest.json").read_text())
    assert manifest["family"] == "digits" and manifest["tasks"]["shots"] == 1
    assert sum(len(s["classes"]) for s in manifest["splits"].values()) == 30
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["generate"]["params"]["params.yaml"]
    assert lock["tasks"]["family"] == "digits" and lock["tasks"]["shots"] == 1


def test_values_apply_to_a_copy_and_an_unknown_key_is_named():
    from metahpo.recipes import with_recipe, with_values

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    digits = with_recipe(raw, "digits", ROOT / "recipes")
    assert digits["tasks"]["family"] == "digits" and raw["tasks"]["family"] == "sinusoid"
    with pytest.raises(ConfigError, match="^--set: search.iteration: no such key in params.yaml$"):
        with_values(raw, {"search.iteration": 9}, "--set")
    with pytest.raises(ConfigError, match="^--set: tasks.family.x: tasks.family is not a section"):
        with_values(raw, {"tasks.family.x": 9}, "--set")
