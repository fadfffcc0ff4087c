"""params.yaml validation: the committed file is valid; each bad input names its key."""

from __future__ import annotations

import copy
import time

import pytest
import yaml

from metahpo.errors import ConfigError
from metahpo.params import load_params, read_params_file, validate

from conftest import DELETE, set_dotted


def test_committed_params_are_valid(tiny_params):
    from conftest import load_default_params

    assert validate(load_default_params()) == []
    assert validate(tiny_params) == []


def _set(params: dict, dotted: str, value) -> dict:
    params = copy.deepcopy(params)
    set_dotted(params, dotted, value)
    return params


# (key to change, new value, text the message must contain)
BAD = [
    ("meta.algorithm", "reptile", "meta.algorithm: expected one of maml, fomaml, metasgd, anil, anil_proximal"),
    ("meta.rule_hidden", 0, "meta.rule_hidden: expected an integer >= 1 and <= 1024, got 0"),
    ("meta.inner_rates", "per_step", "meta.inner_rates: expected one of fixed, lslr, got 'per_step'"),
    ("meta.multi_step_loss", 1.5, "meta.multi_step_loss: expected a number from 0 to 1, got 1.5"),
    ("meta.first_order_fraction", -0.1, "meta.first_order_fraction: expected a number from 0 to 1, got -0.1"),
    ("search.stable_steps", -1, "search.stable_steps: expected an integer >= 0"),
    (
        "search.space.multi_step_loss",
        {"type": "real", "low": 0.0, "high": 1.0, "prior": "log-uniform"},
        "search.space.multi_step_loss.low: a log-uniform prior needs low > 0, got 0.0",
    ),
    ("search.space.multi_step_loss", {"type": "integer", "low": 0, "high": 1, "prior": "uniform"}, "takes real"),
    ("model.representation", 1.5, "model.representation: expected an integer >= 1 and <= 4096, got 1.5"),
    ("meta.inner_lr", -0.1, "meta.inner_lr: expected a number > 0"),
    ("meta.outer_lr", 0, "meta.outer_lr: expected a number > 0"),
    ("meta.inner_steps", 0, "meta.inner_steps: expected an integer >= 1"),
    ("meta.inner_steps", 1.5, "meta.inner_steps: expected an integer"),
    ("meta.meta_batch_size", True, "meta.meta_batch_size: expected an integer"),
    ("meta.query", 0, "meta.query: expected an integer >= 1"),
    ("meta.query", 11, "meta.query: expected <= tasks.query (10), got 11"),
    (
        "search.space.query",
        {"type": "integer", "low": 1, "high": 20, "prior": "uniform"},
        "search.space.query: values up to 20 exceed tasks.query (10)",
    ),
    ("search.space.query", {"type": "categorical", "values": [2, 12]}, "search.space.query: values up to 12 exceed"),
    ("meta.inner_lrr", 0.1, "meta.inner_lrr: unknown key"),
    ("meta", DELETE, "meta: missing"),
    ("train", DELETE, "train: missing"),
    ("train.iterations", "many", "train.iterations: expected an integer"),
    ("train.compute", 0, "train.compute: expected a number > 0"),
    ("train.compute", "2x", "train.compute: expected a number > 0"),
    ("seed", -1, "seed: expected an integer >= 0"),
    ("device", "tpu", "device: expected one of auto, cpu, cuda"),
    ("tasks.family", "omniglot", "tasks.family: expected one of sinusoid"),
    ("tasks.amplitude", [5.0, 0.1], "tasks.amplitude: expected [low, high] with low < high"),
    ("tasks.amplitude", [-1.0, 5.0], "tasks.amplitude: expected low >= 0"),
    ("tasks.splits.meta_test", 0, "tasks.splits.meta_test: expected an integer >= 1"),
    ("tasks.train_points", 5, "tasks.train_points: expected >= tasks.shots + tasks.query"),
    ("model.hidden", 0, "model.hidden: expected an integer >= 1"),
    ("search.method", "bandit", "search.method: expected one of gp, forest"),
    ("search.space", {}, "search.space: expected a non-empty mapping"),
    ("search.n_initial_points", 1000, "search.n_initial_points: expected <= search.n_calls"),
    ("search.space.width", {"type": "integer", "low": 1, "high": 4, "prior": "uniform"}, "search.space.width: unknown"),
    (
        "search.space.inner_lr",
        {"type": "real", "low": 0.1, "high": 0.01, "prior": "log-uniform"},
        "expected low < high",
    ),
    ("search.space.inner_lr", {"type": "real", "low": 0.0, "high": 0.1, "prior": "log-uniform"}, ".low: expected a"),
    ("search.space.inner_lr", {"type": "real", "low": 0.01, "high": 0.1, "prior": "cubic"}, ".prior: expected one"),
    ("search.space.algorithm", {"type": "categorical", "values": []}, "search.space.algorithm.values: expected a non-"),
    ("search.space.algorithm", {"type": "categorical", "values": ["maml", "x"]}, "values[1]: expected one of maml"),
    ("search.space.hidden", {"type": "real", "low": 1, "high": 4, "prior": "uniform"}, "hidden takes integer or cat"),
    ("search.space.inner_steps", {"type": "integer", "low": 1, "high": 3}, "search.space.inner_steps.prior: missing"),
    ("search.space.representation", {"type": "real", "low": 1, "high": 4, "prior": "uniform"}, "takes integer or"),
    (
        "search.space.rule_hidden",
        {"type": "integer", "low": 4, "high": 40, "prior": "uniform"},
        "search.space.rule_hidden: read only by algorithm learned_optimizer, learned_optimizer_fo, which this search",
    ),
    ("search.repeats", 0, "search.repeats: expected an integer >= 1"),
    ("search.class_folds", 0, "search.class_folds: expected an integer >= 1"),
    ("search.start_from_default", "yes", "search.start_from_default: expected true or false, got 'yes'"),
    ("evaluate.max_steps", -2, "evaluate.max_steps: expected an integer >= 0"),
    ("evaluate.workers", 0, "evaluate.workers: expected an integer >= 1 and <= 64, got 0"),
    ("train.finetune.lr", [0.0, 1.0], "train.finetune.lr: expected [low, high] with 0 < low < high <= 100"),
    ("train.finetune.max_steps", 0, "train.finetune.max_steps: expected an integer >= 1 and <= 50"),
    ("train.finetune.eta", 0, "train.finetune.eta: expected an integer >= 1 and <= 100"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD])
def test_bad_params_are_named(tiny_params, tmp_path, key, value, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_set(tiny_params, key, value)))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert message in str(info.value)
    assert all(line.startswith(f"{path}: ") for line in str(info.value).splitlines())


def test_every_problem_is_reported_at_once(tiny_params, tmp_path):
    bad = _set(_set(tiny_params, "meta.inner_lr", -1), "train.iterations", 0)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert len(str(info.value).splitlines()) == 2


@pytest.mark.parametrize(
    ("text", "message"), [(None, "file not found"), ("a: [1,", "not valid YAML"), ("[]", "expected a mapping")]
)
def test_unreadable_params_file(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_params(path)


# Texts that YAML 1.1 (PyYAML) and YAML 1.2 (ruamel.yaml, which DVC uses) read differently, and plain ones.
DVC_READS = [
    "seed: 010\n",
    "a: 1e-3\nb: 1.5e+2\n",
    "a: 0o17\nb: 0x1f\nc: 1_000\n",
    "a: yes\nb: off\nc: ~\n",
    "a: [1, 2]\nb: {c: .inf}\n",
    "%YAML 1.1\n---\nseed: 010\n",
    "base: &b {x: 1}\nmore: {<<: *b, y: 2}\n",
]


@pytest.mark.parametrize("text", DVC_READS, ids=range(len(DVC_READS)))
def test_params_are_read_as_dvc_reads_them(tmp_path, text):
    from dvc.utils.serialize import parse_yaml

    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert read_params_file(path) == parse_yaml(text, str(path))


def test_a_leading_zero_is_decimal_as_for_dvc(tiny_params, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params).replace("\nseed: 0\n", "\nseed: 010\n"))
    assert "seed: 010" in path.read_text()
    assert load_params(path).seed == 10  # YAML 1.1 (PyYAML) would read 8: DVC and the stages would disagree


def _laughs(levels: int, key: str = "lol") -> str:
    lines = [f"{key}0: &{key}0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{key}{i}: &{key}{i} [{', '.join([f'*{key}{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE_YAML = [
    (_laughs(9), "lol5: its aliases expand to more than 100,000 values"),
    ("search:\n  space:\n" + "".join("    " + line + "\n" for line in _laughs(12, "x").splitlines()), "aliases expand"),
    ("a: &r [1, *r]\n", "a[1]: an alias to itself or a key above it"),
    ("a: &r {b: {c: *r}}\n", "a.b.c: an alias to itself"),
    ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 100 levels deep (line 1)"),
    ("a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n", "nested more than 100 levels deep"),
    ("".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150 + "x: 1\n", "nested more than 100 levels"),
    ("seed: " + "1" * 5000 + "\n", "seed: an integer of 5,000 digits, more than 100 (line 1)"),
    ("tasks:\n  splits:\n    meta_train: " + "9" * 200 + "\n", "tasks.splits.meta_train: an integer of 200 digits"),
    ("search:\n  space: {a: 1, a: 2}\n", "search.space.a: given twice (lines 2 and 2)"),
    ("seed: !!python/object/apply:os.system [echo unsafe]\n", "not valid YAML (could not determine a constructor"),
    ("a: 1\n---\nb: 2\n", "not valid YAML (but found another document, line 2)"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE_YAML, ids=[m[:40] for _, m in HOSTILE_YAML])
def test_hostile_yaml_is_refused_in_one_line_and_quickly(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    started = time.process_time()
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert time.process_time() - started < 2.0  # billion laughs: linear in the file, not in its expansion
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)
    assert len(str(info.value).splitlines()) == 1 and len(str(info.value)) < 300


def test_repeats_cannot_be_combined_with_the_median_rule(tiny_params, tmp_path):
    bad = _set(_set(tiny_params, "search.repeats", 2), "search.median_stop.enabled", True)
    assert any(p.startswith("search.repeats: the median rule stops single runs") for p in validate(bad))
    assert validate(_set(tiny_params, "search.repeats", 2)) == []


def test_class_folds_need_classification_and_no_median_rule(tiny_params):
    folds = _set(tiny_params, "search.class_folds", 2)
    assert any(p.startswith("search.class_folds: folds of classes need classification") for p in validate(folds))
    digits = _set(folds, "tasks.family", "digits")
    assert validate(digits) == []
    stopped = _set(digits, "search.median_stop.enabled", True)
    assert any(p.startswith("search.class_folds: the median rule stops single runs") for p in validate(stopped))


def test_start_from_default_needs_the_untuned_values_inside_the_space(tiny_params):
    space = {
        "inner_lr": {"type": "real", "low": 0.1, "high": 0.5, "prior": "log-uniform"},
        "algorithm": {"type": "categorical", "values": ["metasgd"]},
    }
    bad = _set(_set(_set(tiny_params, "search.space", space), "search.start_from_default", True), "meta.inner_lr", 0.01)
    problems = validate(bad)
    assert "search.start_from_default: meta.inner_lr = 0.01 is outside [0.1, 0.5] (search.space.inner_lr)" in problems
    assert any(p.startswith("search.start_from_default: meta.algorithm = 'maml' is not one of") for p in problems)
    assert validate(_set(_set(bad, "meta.inner_lr", 0.2), "meta.algorithm", "metasgd")) == []


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path):
    """mkstemp makes 0600 files; an atomically written file must get the umask's mode, like open()."""
    import os
    import stat

    from metahpo.atomic import write_json

    old = os.umask(0o022)
    try:
        (tmp_path / "plain.txt").write_text("x")
        write_json(tmp_path / "atomic.json", {"a": 1})
    finally:
        os.umask(old)
    plain, atomic = (stat.S_IMODE((tmp_path / n).stat().st_mode) for n in ("plain.txt", "atomic.json"))
    assert plain == 0o644
    assert atomic == plain


def test_cnp_needs_the_mlp(tiny_params):
    conv = _set(_set(tiny_params, "tasks.family", "digits"), "model.arch", "conv")
    conv = _set(conv, "search.space.algorithm", {"type": "categorical", "values": ["maml", "anil"]})
    assert validate(conv) == []
    assert validate(_set(conv, "meta.algorithm", "cnp")) == ["meta.algorithm: cnp needs model.arch: mlp, got conv"]
    searched = _set(conv, "search.space.algorithm", {"type": "categorical", "values": ["maml", "cnp"]})
    expected = "search.space.algorithm: cnp needs model.arch: mlp, got conv (remove cnp from its values)"
    assert validate(searched) == [expected]
    assert validate(_set(_set(tiny_params, "tasks.family", "digits"), "meta.algorithm", "cnp")) == []


def test_a_conditional_dimension_is_accepted_once_its_algorithm_is_searched(tiny_params):
    dim = {"type": "integer", "low": 8, "high": 64, "prior": "uniform"}
    gradient_only = {"type": "categorical", "values": ["maml", "fomaml", "metasgd", "anil"]}
    unread = _set(_set(tiny_params, "search.space.algorithm", gradient_only), "search.space.representation", dim)
    assert [p.split(":")[0] for p in validate(unread)] == ["search.space.representation"]
    fixed = _set(
        tiny_params, "search.space", {"representation": dim, "inner_lr": unread["search"]["space"]["inner_lr"]}
    )
    assert [p.split(":")[0] for p in validate(fixed)] == ["search.space.representation"]
    assert [p.split(":")[0] for p in validate(_set(fixed, "meta.algorithm", "cnp"))] == ["search.space.inner_lr"]
    assert validate(_set(fixed, "search.space.inner_lr", DELETE)) != []
    assert validate(_set(_set(fixed, "search.space.inner_lr", DELETE), "meta.algorithm", "cnp")) == []
    algorithms = {"type": "categorical", "values": ["maml", "cnp"]}
    assert validate(_set(unread, "search.space.algorithm", algorithms)) == []


def test_a_degenerate_rung_plan_is_refused(tiny_params, tmp_path):
    params = _set(_set(tiny_params, "search.fidelity", "hyperband"), "search.iterations", 300)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_set(params, "search.min_iterations", 250)))
    with pytest.raises(ConfigError, match="search.min_iterations: 250 with search.eta: 3 leaves a single rung below"):
        load_params(path)
    path.write_text(yaml.safe_dump(_set(params, "search.min_iterations", 33)))
    assert load_params(path).search.min_iterations == 33  # 33, 99, 300: the rung of 297 is merged, not refused
