"""The params schema: the same parsed values as before it, its JSON form, its docs, and its place in the core."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from pydantic import ValidationError

from metahpo.learners import ALGORITHMS, ARCHITECTURES
from metahpo.params import VOCABULARY, Params, json_schema, load_params, validate
from metahpo.params.types import _fields
from metahpo.recipes import apply_recipe, recipe_names
from metahpo.search import METHODS, PRIORS
from metahpo.sources import source_closure

from conftest import ROOT, load_default_params, shrink

# params.yaml and every recipe, parsed by the code before the schema (the dataclasses and validation.py);
# changed since only on purpose: the default search.fidelity: asha, asha in the omniglot recipe, and
# anil_proximal in the default search space.
BEFORE = json.loads((ROOT / "tests/snapshots/params_parsed.json").read_text())


@pytest.mark.parametrize("name", ["params.yaml", *recipe_names(ROOT / "recipes")])
def test_the_schema_parses_params_and_every_recipe_as_before(tmp_path, name):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    if name != "params.yaml":
        apply_recipe(name, [], tmp_path / "params.yaml", ROOT / "recipes")
    params = load_params(tmp_path / "params.yaml")
    tasks = params.tasks
    after = {
        "params": params.to_dict(),
        "derived": {
            "classification": tasks.classification,
            "image_side": tasks.image_side,
            "support_pool": tasks.support_pool,
        },  # fmt: skip
    }
    # Compared as JSON text: an integer read as a float (9 as 9.0) would change what the stages write and hash.
    assert json.dumps(after, sort_keys=True) == json.dumps(BEFORE[name], sort_keys=True)


def test_the_committed_json_schema_is_the_generated_one():
    committed = json.loads((ROOT / "params.schema.json").read_text())
    assert committed == json_schema(), "run: python scripts/params_schema.py"
    assert (ROOT / "params.yaml").read_text().startswith("# yaml-language-server: $schema=params.schema.json\n")


def test_the_json_schema_lists_the_registered_names_and_the_bounds():
    schema = json_schema()
    meta, search = schema["$defs"]["MetaParams"]["properties"], schema["$defs"]["SearchParams"]["properties"]
    assert meta["algorithm"]["enum"] == list(ALGORITHMS) and search["method"]["enum"] == list(METHODS)
    assert schema["$defs"]["ModelParams"]["properties"]["arch"]["enum"] == list(ARCHITECTURES)
    assert meta["inner_steps"] == {"maximum": 50, "minimum": 1, "title": "Inner Steps", "type": "integer"}
    assert meta["inner_lr"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "title": "Inner Lr"}
    assert schema["additionalProperties"] is False and schema["$defs"]["TaskParams"]["additionalProperties"] is False
    dimension = search["space"]["additionalProperties"]["oneOf"][0]
    assert dimension["properties"]["prior"]["enum"] == list(PRIORS)


def _keys(tp, prefix: str = "") -> dict[str, bool]:
    """Every key path of the schema under ``tp``: True for a section (a mapping of fixed keys)."""
    out = {}
    for name, sub in (_fields(tp) or {}).items():
        out[prefix + name] = _fields(sub) is not None
        if out[prefix + name]:
            out.update(_keys(sub, f"{prefix}{name}."))
    return out


def test_docs_params_md_names_every_key_of_the_schema_and_no_other():
    table = [line for line in (ROOT / "docs/params.md").read_text().splitlines() if line.startswith("| `")]
    documented = {key for line in table for key in re.findall(r"`([^`]+)`", line.split("|")[1])}
    schema = _keys(Params)
    assert documented - set(schema) == set(), "documented, but not a key of the schema"
    undocumented = [
        key for key, is_section in schema.items()
        if not is_section and not any(key == d or key.startswith(f"{d}.") for d in documented)
    ]  # fmt: skip
    assert undocumented == [], "keys of the schema missing from docs/params.md"
    assert len(schema) > 80  # the walk reached the nested sections (tasks.splits.meta_train, ...)


def test_the_models_are_frozen_and_typed(tiny_params):
    params = Params.from_dict(tiny_params)
    with pytest.raises(ValidationError, match="frozen"):
        params.search.n_calls = 5
    copy = params.replace("search", workers=1)
    assert copy.search.workers == 1 and params.search.workers == tiny_params["search"]["workers"]
    assert copy.meta is params.meta  # untouched sections are shared, as with dataclasses.replace
    assert params.to_dict() == tiny_params


def test_every_problem_of_the_whole_file_is_one_line_naming_its_key(tiny_params):
    bad = shrink(load_default_params())
    bad["tasks"]["splits"]["meta_x"] = 1
    bad["search"]["space"]["inner_lr"]["low"] = "a"
    bad["train"]["finetune"]["lr"] = [1.0]
    bad["evaluate"] = []
    del bad["meta"]["query"]
    assert validate(bad) == [
        "tasks.splits.meta_x: unknown key (expected one of meta_train, meta_val, meta_test, meta_ood)",
        "meta.query: missing",
        "search.space.inner_lr.low: expected a number > 0 and <= 100, got 'a'",
        "train.finetune.lr: expected [low, high] with 0 < low < high <= 100, got [1.0]",
        "evaluate: expected a mapping with keys max_steps, task_chunk, workers, got []",
    ]


def test_the_schema_imports_no_domain_package_and_names_are_checked_once_registered(tiny_params):
    """The core schema alone takes any name; ``metahpo.search`` registers the learners' and its own."""
    code = (
        "import sys, json; from metahpo.params import validate, VOCABULARY; "
        "params = json.loads(sys.stdin.read()); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'metahpo' and m.count('.') and "
        "m.split('.')[1] in ('tasks', 'learners', 'search', 'evaluation', 'reporting')); "
        "print(json.dumps([loaded, dict(VOCABULARY), validate(params)]))"
    )
    tiny_params["meta"]["algorithm"] = "reptile"
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(tiny_params), capture_output=True,
                         text=True, check=True, cwd=ROOT)  # fmt: skip
    assert json.loads(out.stdout) == [[], {}, []]
    assert validate(tiny_params) == [f"meta.algorithm: expected one of {', '.join(ALGORITHMS)}, got 'reptile'"]
    assert set(VOCABULARY) == {"algorithm", "arch", "inner_rates", "extra_steps", "outer_schedule", "method",
                               "acq_func", "executor", "objective", "fidelity", "fidelity_unit"}  # fmt: skip


@pytest.mark.parametrize("stage", ["generate", "search", "train", "evaluate", "report"])
def test_every_stage_checks_the_names_the_domain_packages_register(stage):
    """A stage that did not import ``metahpo.search`` would accept any algorithm or search method."""
    closure = {path.relative_to(ROOT).as_posix() for path in source_closure(ROOT / f"stages/{stage}.py")}
    assert "src/metahpo/search/params_rules.py" in closure


def test_no_module_of_the_schema_is_over_400_lines():
    for path in (ROOT / "src/metahpo/params").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path
