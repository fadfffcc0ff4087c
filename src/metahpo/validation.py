"""Validation of params.yaml as plain data: every problem at once, each naming its full key path.

A rule is a function ``check(value, path) -> list of problems``; :data:`SCHEMA` composes them for the
whole file and :func:`validate` adds the checks that span sections, e.g.::

    meta.inner_lr: expected a number > 0 and <= 100, got -0.1
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from metahpo.learners import ALGORITHMS, ARCHITECTURES, INNER_RATES, OUTER_SCHEDULES, USED_ONLY_BY
from metahpo.search import ACQ_FUNCS, EXECUTORS, FIDELITIES, FIDELITY_UNITS, METHODS, OBJECTIVES, PRIORS
from metahpo.search.plan import plan_problems
from metahpo.space import largest_value, outside_space, space_algorithms
from metahpo.task_names import CLASSIFICATION_FAMILIES, FAMILIES, SPLIT_BY

RAW_DATA = "data/raw"
Check = Callable[[object, str], list[str]]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def integer(low: int | None = None, high: int | None = None) -> Check:
    """An integer in ``[low, high]``."""
    bounds = " and ".join(
        s for s in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if s
    )
    want = f"an integer {bounds}".strip()

    def check(v, path):
        ok = _is_int(v) and (low is None or v >= low) and (high is None or v <= high)
        return [] if ok else [f"{path}: expected {want}, got {v!r}"]

    return check


def number(gt: float | None = None, high: float | None = None) -> Check:
    """A finite number ``> gt`` and ``<= high``."""
    bounds = " and ".join(
        s for s in (f"> {gt}" if gt is not None else "", f"<= {high}" if high is not None else "") if s
    )
    want = f"a number {bounds}".strip()

    def check(v, path):
        ok = _is_number(v) and (gt is None or v > gt) and (high is None or v <= high)
        return [] if ok else [f"{path}: expected {want}, got {v!r}"]

    return check


def fraction() -> Check:
    """A number from 0 to 1."""

    def check(v, path):
        return [] if _is_number(v) and 0 <= v <= 1 else [f"{path}: expected a number from 0 to 1, got {v!r}"]

    return check


def choice(*allowed: str) -> Check:
    """One of ``allowed``."""

    def check(v, path):
        return [] if v in allowed else [f"{path}: expected one of {', '.join(allowed)}, got {v!r}"]

    return check


def boolean() -> Check:
    """``true`` or ``false``."""

    def check(v, path):
        return [] if isinstance(v, bool) else [f"{path}: expected true or false, got {v!r}"]

    return check


def address() -> Check:
    """``null`` or a Dask scheduler address such as ``tcp://10.0.0.5:8786``."""

    def check(v, path):
        if v is None or (isinstance(v, str) and ":" in v and " " not in v):
            return []
        return [f"{path}: expected null or a scheduler address like tcp://host:8786, got {v!r}"]

    return check


def tls_files() -> Check:
    """``null`` or ``{ca_file, cert, key}``: PEM files of the CA, and of this client's certificate and key."""
    keys = ("ca_file", "cert", "key")

    def check(v, path):
        if v is None:
            return []
        if not isinstance(v, dict) or set(v) != set(keys):
            return [f"{path}: expected null or a mapping with keys {', '.join(keys)}, got {v!r}"]
        problems = []
        for key in keys:
            file = v[key]
            if not isinstance(file, str) or not file.strip():
                problems.append(f"{path}.{key}: expected the path of a PEM file, got {file!r}")
            elif not Path(file).is_file():
                problems.append(f"{path}.{key}: {file} is not a file")
        return problems

    return check


def shot_list() -> Check:
    """A non-empty list of distinct support-set sizes (K) to evaluate at one step."""

    def check(v, path):
        ok = isinstance(v, list) and v and all(_is_int(k) and 1 <= k <= 1000 for k in v) and len(set(v)) == len(v)
        return [] if ok else [f"{path}: expected a non-empty list of distinct integers in [1, 1000], got {v!r}"]

    return check


# Task values are stored as float32 and squared in the MSE: magnitudes are kept far from its overflow.
TASK_RANGE_LIMIT = 1e6


def interval(min_low: float | None = None) -> Check:
    """A ``[low, high]`` pair of numbers with ``low < high`` (and ``low >= min_low``), within +-1e6."""

    def check(v, path):
        if not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and v[0] < v[1]):
            return [f"{path}: expected [low, high] with low < high, got {v!r}"]
        if min_low is not None and v[0] < min_low:
            return [f"{path}: expected low >= {min_low}, got {v!r}"]
        if max(abs(v[0]), abs(v[1])) > TASK_RANGE_LIMIT:
            return [
                f"{path}: expected values within +-{TASK_RANGE_LIMIT:g} (tasks are float32 and errors are squared), "
                f"got {v!r}"
            ]
        return []

    return check


def rate_range() -> Check:
    """A ``[low, high]`` pair of learning rates with ``0 < low < high <= 100``."""

    def check(v, path):
        ok = isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and 0 < v[0] < v[1] <= 100
        return [] if ok else [f"{path}: expected [low, high] with 0 < low < high <= 100, got {v!r}"]

    return check


def rotation_list() -> Check:
    """Distinct rotations in degrees, each 0, 90, 180 or 270."""

    def check(v, path):
        ok = (
            isinstance(v, list)
            and v
            and all(_is_int(r) and r in (0, 90, 180, 270) for r in v)
            and len(set(v)) == len(v)
        )
        return (
            [] if ok else [f"{path}: expected a non-empty list of distinct rotations from 0, 90, 180, 270, got {v!r}"]
        )

    return check


def optional(rule: Check) -> Check:
    """``null`` or a value accepted by ``rule``."""

    def check(v, path):
        return [] if v is None else rule(v, path)

    return check


def text() -> Check:
    """A non-empty string (a path)."""

    def check(v, path):
        return [] if isinstance(v, str) and v.strip() else [f"{path}: expected a non-empty path, got {v!r}"]

    return check


def section(fields: dict[str, Check]) -> Check:
    """A mapping with exactly the keys of ``fields``, each checked by its own rule."""

    def check(v, path):
        if not isinstance(v, dict):
            return [f"{path or 'the file'}: expected a mapping with keys {', '.join(fields)}, got {v!r}"]
        prefix = f"{path}." if path else ""
        problems = [f"{prefix}{k}: unknown key (expected one of {', '.join(fields)})" for k in v if k not in fields]
        for key, rule in fields.items():
            if key not in v:
                problems.append(f"{prefix}{key}: missing")
            else:
                problems.extend(rule(v[key], f"{prefix}{key}"))
        return problems

    return check


# What each tunable meta-hyperparameter may be, shared by its fixed value and its search dimension.
TUNABLE: dict[str, tuple[str, Check]] = {
    "algorithm": ("meta", choice(*ALGORITHMS)),
    "inner_lr": ("meta", number(gt=0, high=100)),
    "inner_steps": ("meta", integer(1, 50)),
    "outer_lr": ("meta", number(gt=0, high=1)),
    "meta_batch_size": ("meta", integer(1, 10_000)),
    "query": ("meta", integer(1, 1000)),
    "outer_schedule": ("meta", choice(*OUTER_SCHEDULES)),
    "hidden": ("model", integer(1, 4096)),
    "layers": ("model", integer(1, 16)),
    "representation": ("model", integer(1, 4096)),
    "rule_hidden": ("meta", integer(1, 1024)),
    "inner_rates": ("meta", choice(*INNER_RATES)),
    "multi_step_loss": ("meta", fraction()),
    "first_order_fraction": ("meta", fraction()),
}
REAL_KEYS = ("inner_lr", "outer_lr", "multi_step_loss", "first_order_fraction")
CATEGORICAL_KEYS = ("algorithm", "outer_schedule", "inner_rates")


def _tunables(group: str) -> dict[str, Check]:
    return {k: rule for k, (g, rule) in TUNABLE.items() if g == group}


def search_dimension(v, path) -> list[str]:
    """One search-space dimension: ``real`` / ``integer`` (low, high, prior) or ``categorical`` (values)."""
    name = path.rsplit(".", 1)[-1]
    if name not in TUNABLE:
        return [f"{path}: unknown meta-hyperparameter (expected one of {', '.join(TUNABLE)})"]
    value_rule = TUNABLE[name][1]
    if not isinstance(v, dict) or v.get("type") not in ("real", "integer", "categorical"):
        return [
            f"{path}.type: expected one of real, integer, categorical, "
            f"got {v.get('type') if isinstance(v, dict) else v!r}"
        ]
    kind = v["type"]
    if kind == "categorical":
        problems = section({"type": choice("categorical"), "values": lambda x, p: []})(v, path)
        values = v.get("values")
        if not isinstance(values, list) or not values:
            return problems + [f"{path}.values: expected a non-empty list, got {values!r}"]
        if len(set(map(repr, values))) != len(values):
            problems.append(f"{path}.values: contains duplicates: {values!r}")
        for i, item in enumerate(values):
            problems.extend(value_rule(item, f"{path}.values[{i}]"))
        return problems
    allowed = "categorical" if name in CATEGORICAL_KEYS else "real" if name in REAL_KEYS else "integer"
    if kind != allowed:
        return [f"{path}.type: {name} takes {allowed} or categorical values, not {kind}"]
    problems = section({"type": choice(kind), "low": value_rule, "high": value_rule, "prior": choice(*PRIORS)})(v, path)
    if not problems and v["low"] >= v["high"]:
        problems.append(f"{path}: expected low < high, got low={v['low']!r}, high={v['high']!r}")
    if not problems and v["prior"] == "log-uniform" and v["low"] <= 0:
        problems.append(f"{path}.low: a log-uniform prior needs low > 0, got {v['low']!r}")
    return problems


def search_space(v, path) -> list[str]:
    """A non-empty mapping of meta-hyperparameter name to dimension."""
    if not isinstance(v, dict) or not v:
        return [f"{path}: expected a non-empty mapping of meta-hyperparameter to dimension, got {v!r}"]
    return [p for name, dim in v.items() for p in search_dimension(dim, f"{path}.{name}")]


SCHEMA = section(
    {
        "seed": integer(0, 2**32 - 1),
        "device": choice("auto", "cpu", "cuda"),
        "threads": integer(1, 256),
        "tasks": section(
            {
                "family": choice(*FAMILIES),
                "shots": integer(1, 1000),
                "query": integer(1, 1000),
                "amplitude": interval(min_low=0),
                "phase": interval(),
                "x_range": interval(),
                "eval_shots": shot_list(),
                "grid_points": integer(2, 10_000),
                "train_points": integer(2, 10_000),
                "ood": section({"amplitude": interval(min_low=0), "phase": interval()}),
                "splits": section(
                    {name: integer(1, 10_000_000) for name in ("meta_train", "meta_val", "meta_test", "meta_ood")}
                ),
                "ways": integer(2, 1000),
                "class_splits": section(
                    {name: number(gt=0, high=1) for name in ("meta_train", "meta_val", "meta_test")}
                ),
                "rotations": rotation_list(),
                "split_by": choice(*SPLIT_BY),
                "image_size": optional(integer(4, 512)),
                "root": optional(text()),
            }
        ),
        "model": section({"arch": choice(*ARCHITECTURES), **_tunables("model")}),
        "meta": section(_tunables("meta")),
        "search": section(
            {
                "method": choice(*METHODS),
                "acq_func": choice(*ACQ_FUNCS),
                "n_calls": integer(1, 100_000),
                "n_initial_points": integer(1, 100_000),
                "iterations": integer(1, 10_000_000),
                "objective_steps": integer(0, 100),
                "stable_steps": integer(0, 100),
                "objective": choice(*OBJECTIVES),
                "repeats": integer(1, 100),
                "class_folds": integer(1, 100),
                "start_from_default": boolean(),
                "workers": integer(1, 1024),
                "executor": choice(*EXECUTORS),
                "address": address(),
                "tls": tls_files(),
                "retries": integer(0, 10),
                "grid_points": integer(2, 100),
                "median_stop": section(
                    {"enabled": boolean(), "checkpoints": integer(2, 100), "min_trials": integer(1, 10_000)}
                ),
                "fidelity": choice(*FIDELITIES),
                "min_iterations": integer(1, 10_000_000),
                "eta": integer(2, 100),
                "fidelity_unit": choice(*FIDELITY_UNITS),
                "max_cost": optional(number(gt=0, high=1e6)),
                "space": search_space,
            }
        ),
        "train": section(
            {
                "iterations": integer(1, 100_000_000),
                "log_every": integer(1, 10_000_000),
                "patience": integer(0, 1_000_000),
                "workers": integer(1, 64),
                "compare_kinds": boolean(),
                "finetune": section(
                    {
                        "lr": rate_range(),
                        "lr_points": integer(1, 1000),
                        "max_steps": TUNABLE["inner_steps"][1],
                        "eta": integer(1, 100),
                    }
                ),
            }
        ),
        "evaluate": section({"max_steps": integer(0, 100), "task_chunk": integer(1, 1_000_000)}),
    }
)


def _cross_checks(params: dict) -> list[str]:
    problems = []
    tasks, search = params["tasks"], params["search"]
    if tasks["train_points"] < tasks["shots"] + tasks["query"]:
        problems.append(
            f"tasks.train_points: expected >= tasks.shots + tasks.query = {tasks['shots'] + tasks['query']}, "
            f"got {tasks['train_points']}"
        )
    if search["n_initial_points"] > search["n_calls"]:
        problems.append(
            f"search.n_initial_points: expected <= search.n_calls ({search['n_calls']}), "
            f"got {search['n_initial_points']}"
        )
    if search["executor"] == "local" and search["address"] is not None:
        problems.append(f"search.address: only used with search.executor: dask, got {search['address']!r}")
    if search["executor"] == "local" and search["tls"] is not None:
        problems.append("search.tls: only used with search.executor: dask")
    for key in ("repeats", "class_folds"):
        if search[key] > 1 and search["median_stop"]["enabled"]:
            problems.append(
                f"search.{key}: the median rule stops single runs, so it needs {key}: 1 "
                f"(got {search[key]}; set search.median_stop.enabled: false)"
            )
    if search["fidelity"] != "none":
        problems.extend(_fidelity_checks(search))
    elif search["fidelity_unit"] != "iterations":
        problems.append(
            f"search.fidelity_unit: {search['fidelity_unit']} measures the rungs of a multi-fidelity search, so it "
            "needs search.fidelity: successive_halving or hyperband (got none)"
        )
    if search["start_from_default"] and search["max_cost"] is not None and search["max_cost"] < 1:
        problems.append(
            f"search.max_cost: {search['max_cost']} is below the untuned setting's own cost (1), which "
            "search.start_from_default runs as trial 0; raise it to at least 1"
        )
    if search["method"] == "grid":
        problems.extend(_grid_size(search))
    finetune_steps, max_steps = params["train"]["finetune"]["max_steps"], params["evaluate"]["max_steps"]
    if finetune_steps > max_steps:
        problems.append(
            f"train.finetune.max_steps: expected <= evaluate.max_steps ({max_steps}), the steps evaluated, "
            f"got {finetune_steps}"
        )
    problems.extend(_training_query_checks(params))
    problems.extend(_algorithm_checks(params))
    if search["start_from_default"]:
        problems.extend(_default_outside_space(params))
    return problems + _family_checks(params)


def _fidelity_checks(search: dict) -> list[str]:
    """Settings a multi-fidelity search cannot use."""
    problems = []
    if search["min_iterations"] >= search["iterations"]:
        problems.append(
            f"search.min_iterations: expected < search.iterations ({search['iterations']}) with "
            f"search.fidelity: {search['fidelity']}, got {search['min_iterations']}"
        )
    else:
        keys = ("search.iterations", "search.min_iterations", "search.eta")
        problems.extend(plan_problems(search["iterations"], search["min_iterations"], search["eta"], keys))
    if search["median_stop"]["enabled"]:
        problems.append(
            f"search.median_stop.enabled: the median rule and search.fidelity: {search['fidelity']} both stop "
            "trials early; use one (set search.median_stop.enabled: false or search.fidelity: none)"
        )
    return problems


# The grid search lists every point before it starts; a grid this large would never be run through anyway.
MAX_GRID_POINTS = 100_000


def _grid_size(search: dict) -> list[str]:
    """A ``method: grid`` whose full grid is too large to list."""
    size = 1
    for dim in search["space"].values():
        if dim["type"] == "categorical":
            size *= len(dim["values"])
        elif dim["type"] == "integer":
            size *= min(search["grid_points"], dim["high"] - dim["low"] + 1)
        else:
            size *= search["grid_points"]
    if size <= MAX_GRID_POINTS:
        return []
    return [
        f"search.grid_points: {search['grid_points']} values per dimension of search.space make a grid of "
        f"{size:,} points, more than {MAX_GRID_POINTS:,}; lower search.grid_points or search fewer dimensions"
    ]


def _training_query_checks(params: dict) -> list[str]:
    """Meta-training query sizes above ``tasks.query``, which sizes the stored data and the image checks."""
    limit, problems = params["tasks"]["query"], []
    if params["meta"]["query"] > limit:
        problems.append(f"meta.query: expected <= tasks.query ({limit}), got {params['meta']['query']}")
    dim = params["search"]["space"].get("query")
    if dim is not None:
        largest = largest_value(dim)
        if largest > limit:
            problems.append(f"search.space.query: values up to {largest} exceed tasks.query ({limit})")
    return problems


def searched_algorithms(params: dict) -> list[str]:
    """The algorithms a search tries: the values of ``search.space.algorithm``, else ``meta.algorithm``."""
    return space_algorithms(params["search"]["space"], params["meta"]["algorithm"])


def _algorithm_checks(params: dict) -> list[str]:
    """A CNP on the conv net, and search dimensions that no algorithm of the search reads."""
    problems, arch = [], params["model"]["arch"]
    if arch != "mlp":
        if params["meta"]["algorithm"] == "cnp":
            problems.append(f"meta.algorithm: cnp needs model.arch: mlp (its encoder and decoder are MLPs), got {arch}")
        if "cnp" in params["search"]["space"].get("algorithm", {}).get("values", []):
            problems.append(
                f"search.space.algorithm: cnp needs model.arch: mlp, got {arch} (remove cnp from its values)"
            )
    tried = searched_algorithms(params)
    for name in params["search"]["space"]:
        users = USED_ONLY_BY.get(name, tried)
        if not set(users) & set(tried):
            problems.append(
                f"search.space.{name}: read only by algorithm {', '.join(users)}, which this search never tries "
                f"({', '.join(tried)}); drop the dimension or add the algorithm to search.space.algorithm"
            )
    return problems


def _default_outside_space(params: dict) -> list[str]:
    """Untuned values that ``search.start_from_default`` cannot use as a point of ``search.space``."""
    defaults = {name: params[TUNABLE[name][0]][name] for name in params["search"]["space"]}
    return [
        f"search.start_from_default: {TUNABLE[name][0]}.{name} = {defaults[name]!r} is {where} (search.space.{name})"
        for name, where in outside_space(defaults, params["search"]["space"])
    ]


def _family_checks(params: dict) -> list[str]:
    tasks, problems = params["tasks"], []
    if tasks["family"] not in CLASSIFICATION_FAMILIES:
        if params["model"]["arch"] == "conv":
            problems.append("model.arch: conv needs images (tasks.family: digits or image_folder), got sinusoid")
        if params["search"]["objective"] == "accuracy":
            problems.append("search.objective: accuracy needs classification (tasks.family: digits or image_folder)")
        if params["search"]["class_folds"] > 1:
            problems.append(
                f"search.class_folds: folds of classes need classification (tasks.family: digits or image_folder), "
                f"got {params['search']['class_folds']}"
            )
        return problems
    if tasks["split_by"] == "alphabet" and tasks["family"] != "image_folder":
        problems.append(
            f"tasks.split_by: alphabet needs tasks.family: image_folder in the Omniglot layout, got {tasks['family']}"
        )
    fractions = tasks["class_splits"]
    if abs(sum(fractions.values()) - 1.0) > 1e-9:
        problems.append(f"tasks.class_splits: expected fractions summing to 1, got {fractions!r}")
    if tasks["family"] == "image_folder":
        for key in ("root", "image_size"):
            if tasks[key] is None:
                problems.append(f"tasks.{key}: required by tasks.family: image_folder (got null)")
        root = tasks["root"]
        inside = (
            root is not None and PurePosixPath(root).is_relative_to(RAW_DATA) and ".." not in PurePosixPath(root).parts
        )
        if root is not None and not inside:
            problems.append(
                f"tasks.root: expected a folder or .zip file under {RAW_DATA}/ (the generate stage depends on "
                f"{RAW_DATA}, so a changed image reruns it), got {root!r}"
            )
    return problems


def validate_setting(setting, keys: tuple[str, ...] = tuple(TUNABLE)) -> list[str]:
    """Problems with a mapping of tunable meta-hyperparameters (a learner config, a search result)."""
    return section({k: TUNABLE[k][1] for k in keys})(setting, "")


def validate(params) -> list[str]:
    """Return every problem found in ``params`` (an empty list means valid)."""
    problems = SCHEMA(params, "")
    return problems or _cross_checks(params)
