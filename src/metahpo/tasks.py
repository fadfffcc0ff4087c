"""Sinusoid regression tasks (the MAML paper's setting): generation, storage and loading.

A task is ``y = A * sin(x - phase)`` with ``A ~ U[amplitude]``, ``phase ~ U[phase]`` and
``x ~ U[x_range]``. Splits are written as NPZ files (no pickle) plus a JSON manifest describing the
task distribution, the array shapes and a SHA-256 of each file.

* ``meta_train``: ``amplitude``, ``phase``, and a pool ``x``, ``y`` of ``train_points`` points per
  task, from which meta-training draws support and query sets.
* ``meta_val`` / ``meta_test`` / ``meta_ood``: fixed ``support_x/y`` (a pool of the largest of
  ``shots`` and ``eval_shots`` points; K-shot evaluation uses the first K), ``query_x/y`` (``query``
  random points) and ``grid_y`` on the shared ``grid_x`` (``grid_points`` evenly spaced inputs).
  ``meta_ood`` draws amplitudes and phases from ``tasks.ood`` (outside the training ranges).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metahpo import paths
from metahpo.atomic import atomic_path, write_json
from metahpo.errors import TaskDataError

SPLITS = ("meta_train", "meta_val", "meta_test", "meta_ood")
EVALUATION_SPLITS = ("meta_val", "meta_test", "meta_ood")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SinusoidFamily:
    """The distribution of sinusoid tasks."""

    amplitude: tuple[float, float]
    phase: tuple[float, float]
    x_range: tuple[float, float]

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` amplitudes and phases."""
        amplitude = rng.uniform(*self.amplitude, size=n)
        phase = rng.uniform(*self.phase, size=n)
        return amplitude, phase

    def inputs(self, rng: np.random.Generator, n_tasks: int, n_points: int) -> np.ndarray:
        """Draw inputs uniformly in ``x_range``, shape ``[n_tasks, n_points, 1]``."""
        return rng.uniform(*self.x_range, size=(n_tasks, n_points, 1))

    def grid(self, n_points: int) -> np.ndarray:
        """Evenly spaced inputs over ``x_range``, shape ``[n_points, 1]``."""
        return np.linspace(*self.x_range, n_points).reshape(-1, 1)

    @staticmethod
    def targets(amplitude: np.ndarray, phase: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``A * sin(x - phase)`` for each task; ``x`` is ``[tasks, points, 1]`` or ``[points, 1]``."""
        return amplitude[:, None, None] * np.sin(x - phase[:, None, None])


def family_from_params(tasks: dict) -> SinusoidFamily:
    """Build the task family from the ``tasks`` section of params.yaml."""
    return SinusoidFamily(tuple(tasks["amplitude"]), tuple(tasks["phase"]), tuple(tasks["x_range"]))


def support_pool(tasks: dict) -> int:
    """Support points stored per evaluation task: enough for every K that is evaluated."""
    return max(tasks["shots"], *tasks["eval_shots"])


def generate_splits(tasks: dict, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Generate every split as float32 arrays; each split has its own child stream of ``seed``."""
    in_distribution = family_from_params(tasks)
    shifted = SinusoidFamily(tuple(tasks["ood"]["amplitude"]), tuple(tasks["ood"]["phase"]), tuple(tasks["x_range"]))
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    grid_x = in_distribution.grid(tasks["grid_points"])
    splits: dict[str, dict[str, np.ndarray]] = {}
    for name, stream in zip(SPLITS, streams):
        rng = np.random.default_rng(stream)
        n = tasks["splits"][name]
        family = shifted if name == "meta_ood" else in_distribution
        amplitude, phase = family.sample(rng, n)
        if name == "meta_train":
            x = family.inputs(rng, n, tasks["train_points"])
            arrays = {"x": x, "y": family.targets(amplitude, phase, x)}
        else:
            support_x = family.inputs(rng, n, support_pool(tasks))
            query_x = family.inputs(rng, n, tasks["query"])
            arrays = {
                "support_x": support_x,
                "support_y": family.targets(amplitude, phase, support_x),
                "query_x": query_x,
                "query_y": family.targets(amplitude, phase, query_x),
                "grid_x": grid_x,
                "grid_y": family.targets(amplitude, phase, grid_x[None]),
            }
        arrays = {"amplitude": amplitude, "phase": phase, **arrays}
        splits[name] = {k: v.astype(np.float32) for k, v in arrays.items()}
    return splits


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_splits(out_dir: str | Path, splits: dict[str, dict[str, np.ndarray]], tasks: dict, seed: int) -> None:
    """Write ``<split>.npz`` files and ``manifest.json`` (the manifest last, so it vouches for complete files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format_version": FORMAT_VERSION, "family": tasks["family"], "seed": seed, "tasks": tasks, "splits": {}}
    for name, arrays in splits.items():
        path = out / f"{name}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        manifest["splits"][name] = {
            "file": path.name,
            "sha256": _sha256(path),
            "arrays": {k: list(v.shape) for k, v in arrays.items()},
        }
    write_json(out / "manifest.json", manifest)


def load_manifest(data_dir: str | Path) -> dict:
    """Read ``manifest.json`` of a task directory."""
    path = Path(data_dir) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskDataError(f"{path}: missing; run the generate stage first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaskDataError(f"{path}: not valid JSON ({exc})") from None


def load_split(data_dir: str | Path, name: str) -> dict[str, np.ndarray]:
    """Load one split, checking it against the manifest (hash, array names, shapes, dtype, finiteness)."""
    manifest = load_manifest(data_dir)
    entry = manifest.get("splits", {}).get(name)
    path = Path(data_dir) / f"{name}.npz"
    if entry is None:
        raise TaskDataError(f"{Path(data_dir) / 'manifest.json'}: no entry for split {name!r}")
    if not path.exists():
        raise TaskDataError(f"{path}: missing; run the generate stage first")
    if _sha256(path) != entry["sha256"]:
        raise TaskDataError(f"{path}: contents do not match the manifest (modified or truncated)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad file
        raise TaskDataError(f"{path}: unreadable ({exc})") from None
    expected = entry["arrays"]
    if set(arrays) != set(expected):
        raise TaskDataError(f"{path}: arrays {sorted(arrays)} do not match the manifest's {sorted(expected)}")
    for key, arr in arrays.items():
        if list(arr.shape) != expected[key] or arr.dtype != np.float32:
            raise TaskDataError(
                f"{path}: array {key!r} is {arr.dtype}{list(arr.shape)}, expected float32{expected[key]}"
            )
        if not np.isfinite(arr).all():
            raise TaskDataError(f"{path}: array {key!r} contains NaN or infinite values")
    return arrays


def generate_stage(params: dict, device=None) -> None:
    """DVC stage ``generate``: write every split of ``params['tasks']`` under ``data/tasks``."""
    splits = generate_splits(params["tasks"], params["seed"])
    save_splits(paths.TASKS, splits, params["tasks"], params["seed"])
    print(", ".join(f"{k}: {len(v['amplitude'])} tasks" for k, v in splits.items()), file=sys.stderr)
