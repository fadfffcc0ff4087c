"""A built tabular benchmark (see build_table.py) as arrays: learning curves, meta_test scores, nearest settings.

A table is ``FAMILY.design.json`` plus ``FAMILY.jsonl``. :func:`load_table` keeps the longest prefix of the
Sobol design whose settings have every seed, so a partial table is still a balanced design.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]

# The params sections no trial reads (the search's trial log leaves them out of its fingerprint for the same
# reason). A design written before one of their keys existed, or with another value, still describes today's
# trials, so params.yaml's sections (with the family's recipe applied) are used.
NOT_READ_BY_A_TRIAL = ("train", "evaluate")


@dataclass
class Table:
    """Curves ``values[setting, seed, step]`` (NaN where a training failed), meta_test and the design's points.

    ``values[s, k, r]`` is the meta_val objective of setting ``s`` trained with seed ``k`` after ``(r + 1) * every``
    iterations. ``codes`` encodes each point for the nearest-setting look-up: a category's index for a categorical
    dimension, the position in [0, 1] (on the log scale where the prior is log-uniform) for the others.
    """

    family: str
    points: list[dict]
    space: dict
    values: np.ndarray
    meta_test: np.ndarray
    every: int
    iterations: int
    min_iterations: int
    eta: int
    settings_designed: int
    rows: int
    params: dict  # the design's params (read_design), from which a search's params are made

    def __post_init__(self):
        self.codes = np.array([encode(self.space, p) for p in self.points])
        self.categorical = np.array([dim["type"] == "categorical" for dim in self.space.values()])

    def nearest(self, point: dict) -> int:
        """The table's setting nearest ``point``: a categorical mismatch costs 1, numbers their squared distance."""
        return nearest(self.codes, self.categorical, encode(self.space, point))

    def value(self, setting: int, seed: int, iterations: int) -> float | None:
        """The objective after ``iterations`` iterations, or None where that training failed by then."""
        v = self.values[setting, seed, iterations // self.every - 1]
        return float(v) if math.isfinite(v) else None

    def true_values(self, penalty: float) -> np.ndarray:
        """Each setting's expected full-length objective: the mean over seeds, a failed seed counted as ``penalty``."""
        final = np.where(np.isfinite(self.values[:, :, -1]), self.values[:, :, -1], penalty)
        return final.mean(axis=1)


def read_design(path: Path) -> dict:
    """The design at ``path``, with the sections that no trial reads (``NOT_READ_BY_A_TRIAL``) taken from
    params.yaml with the family's recipe (``recipes/FAMILY.yaml``) applied, as the builder makes them."""
    from metahpo.recipes import with_recipe

    design = json.loads(Path(path).read_text())
    current = with_recipe(yaml.safe_load((ROOT / "params.yaml").read_text()), design["family"], ROOT / "recipes")
    for section in NOT_READ_BY_A_TRIAL:
        design["params"][section] = current[section]
    return design


def encode(space: dict, point: dict) -> list[float]:
    """``point`` as numbers: a category's index, or the value's position in [0, 1] (log scale for log priors)."""
    out = []
    for name, dim in space.items():
        value = point[name]
        if dim["type"] == "categorical":
            out.append(float(list(dim["values"]).index(value)))
            continue
        low, high = float(dim["low"]), float(dim["high"])
        if dim.get("prior") == "log-uniform":
            out.append((math.log(value) - math.log(low)) / (math.log(high) - math.log(low)))
        else:
            out.append((float(value) - low) / (high - low))
    return out


def nearest(codes: np.ndarray, categorical: np.ndarray, code) -> int:
    """Index of the row of ``codes`` nearest ``code`` (a categorical mismatch counts 1, numbers squared)."""
    code = np.asarray(code, dtype=float)
    mismatch = (codes[:, categorical] != code[categorical]).sum(axis=1)
    squares = ((codes[:, ~categorical] - code[~categorical]) ** 2).sum(axis=1)
    return int(np.argmin(mismatch + squares))


def load_table(prefix: Path, max_settings: int | None = None) -> Table:
    """The table at ``prefix`` (``prefix.design.json``, ``prefix.jsonl``): the longest complete prefix of settings."""
    design_path, rows_path = Path(f"{prefix}.design.json"), Path(f"{prefix}.jsonl")
    for path in (design_path, rows_path):
        if not path.exists():
            raise SystemExit(f"{path}: no such table file (build it with benchmarks/tabular/build_table.py)")
    design = read_design(design_path)
    search = design["params"]["search"]
    every, iterations, seeds = design["every"], search["iterations"], len(design["seeds"])
    steps = iterations // every
    rows = {}
    for number, line in enumerate(rows_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(rows_path.read_text().splitlines()):
                break  # a torn last line of a build in progress
            raise SystemExit(f"{rows_path}:{number}: not a JSON row") from None
        rows[(row["setting"], row["seed_index"])] = row
    complete = 0
    while complete < len(design["points"]) and all((complete, k) in rows for k in range(seeds)):
        complete += 1
    if max_settings is not None:
        complete = min(complete, max_settings)
    if complete < 2:
        raise SystemExit(f"{rows_path}: {complete} complete settings; the simulator needs at least 2")
    values = np.full((complete, seeds, steps), np.nan)
    meta_test = np.full((complete, seeds), np.nan)
    for s in range(complete):
        for k in range(seeds):
            row = rows[(s, k)]
            curve = [np.nan if v is None else v for v in row["curve"]][:steps]
            values[s, k, : len(curve)] = curve  # a failed training's curve ends before its failure: NaN after
            meta_test[s, k] = np.nan if row["meta_test"] is None else row["meta_test"]
    return Table(
        family=design["family"],
        points=design["points"][:complete],
        space=search["space"],
        values=values,
        meta_test=meta_test,
        every=every,
        iterations=iterations,
        min_iterations=search["min_iterations"],
        eta=search["eta"],
        settings_designed=len(design["points"]),
        rows=len(rows),
        params=design["params"],
    )


def config_space(space: dict, seed: int):
    """The search space as a ConfigSpace for SMAC3 and DEHB (imported here, so the table loads without it)."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    for name, dim in space.items():
        if dim["type"] == "categorical":
            cs.add(Categorical(name, list(dim["values"])))
        elif dim["type"] == "integer":
            cs.add(Integer(name, (int(dim["low"]), int(dim["high"]))))
        else:
            cs.add(Float(name, (float(dim["low"]), float(dim["high"])), log=dim.get("prior") == "log-uniform"))
    return cs
