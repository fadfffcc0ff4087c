"""Shared set-up of the search benchmarks: the committed params, scaled down, and in-memory task data."""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

from metahpo.learners.family import zero_predictor_mse
from metahpo.params import Params, read_params_file
from metahpo.search.driver import Search
from metahpo.tasks.sinusoid import generate_splits
from metahpo.tasks.storage import save_splits

ROOT = Path(__file__).resolve().parents[1]


def benchmark_params(iterations: int, n_calls: int, workers: int) -> dict:
    """params.yaml with smaller task splits and the given search budget (single fidelity)."""
    params = copy.deepcopy(read_params_file(ROOT / "params.yaml"))
    params["tasks"]["splits"].update(meta_train=5000, meta_val=100)
    params["search"].update(iterations=iterations, n_calls=n_calls, workers=workers, executor="local", address=None)
    params["search"]["fidelity"] = "none"  # these benchmarks measure full-length trials
    params["search"]["n_initial_points"] = min(params["search"]["n_initial_points"], n_calls)
    return params


def make_search(params: Params, folder: Path, data_seed: int) -> Search:
    """The search stage's ``Search`` writing under ``folder``, on sinusoid tasks generated from ``params.tasks``
    with ``data_seed`` and saved there with their manifest, as the generate stage writes them."""
    splits = generate_splits(params.tasks, data_seed)
    save_splits(folder / "tasks", splits, params.tasks, data_seed)
    data = {k: splits[k] for k in ("meta_train", "meta_val")}
    return Search(params, data, zero_predictor_mse(data["meta_val"]), folder / "search", folder / "tasks/manifest.json")


def timed_search(raw: dict) -> tuple[float, dict, list[dict]]:
    """Run one fresh search in a temporary directory; return wall seconds, the best trial and all rows."""
    params = Params.from_dict(raw)
    with tempfile.TemporaryDirectory() as tmp:
        search = make_search(params, Path(tmp), params.seed)
        start = time.perf_counter()
        best = search.run()
        return time.perf_counter() - start, best, [search.rows[t] for t in sorted(search.rows)]
