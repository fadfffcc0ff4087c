"""Task data on disk: every split an NPZ file (no pickle) plus a JSON manifest that vouches for them.

The manifest records the format version, the task settings, and per split its array names, shapes,
dtypes and a SHA-256 of the file; classification splits also list their classes and source classes.
Loading checks a split against all of it, so a missing, truncated, tampered or outdated file is named
before any work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from metahpo.atomic import atomic_path, write_json
from metahpo.errors import TaskDataError
from metahpo.json_files import INTEGER, OBJECT, TEXT, Each, ListOf, Optional, load_json_object, schema_problem
from metahpo.params import TaskParams

# 3: class splits by source class (rotations stay in their source's split), class_sources arrays.
FORMAT_VERSION = 3
# What the stages read of a manifest; ``classes`` and ``sources`` describe a classification split.
MANIFEST = {
    "format_version": INTEGER,
    "family": TEXT,
    "seed": INTEGER,
    "tasks": OBJECT,
    "splits": Each(
        {
            "file": TEXT,
            "sha256": TEXT,
            "arrays": Each(ListOf(INTEGER)),
            "dtypes": Each(TEXT),
            "classes": Optional(ListOf(TEXT)),
            "sources": Optional(Each(ListOf(TEXT))),
        }
    ),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_splits(
    out_dir: str | Path,
    splits: dict[str, dict[str, np.ndarray]],
    tasks: TaskParams,
    seed: int,
    described: dict | None = None,
) -> None:
    """Write ``<split>.npz`` files and ``manifest.json`` (the manifest last, so it vouches for complete files).

    ``described`` (classification) maps each split to more manifest entries: its classes and their sources.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": FORMAT_VERSION,
        "family": tasks.family,
        "seed": seed,
        "tasks": tasks.model_dump(),
        "splits": {},
    }
    for name, arrays in splits.items():
        path = out / f"{name}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        manifest["splits"][name] = {
            "file": path.name,
            "sha256": _sha256(path),
            "arrays": {k: list(v.shape) for k, v in arrays.items()},
            "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
        }
        if described is not None:
            manifest["splits"][name] |= described[name]
    write_json(out / "manifest.json", manifest)


def load_manifest(data_dir: str | Path) -> dict:
    """Read ``manifest.json`` of a task directory."""
    path = Path(data_dir) / "manifest.json"
    manifest = load_json_object(path, TaskDataError, "run the generate stage first")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise TaskDataError(
            f"{path}: task data format {version}, this metahpo reads format {FORMAT_VERSION}; "
            "regenerate it (dvc repro --force -s generate)"
        )
    problem = schema_problem(manifest, MANIFEST)
    if problem:
        raise TaskDataError(f"{path}: {problem}; regenerate it (dvc repro --force -s generate)")
    return manifest


def check_generated_with(data_dir: str | Path, tasks: TaskParams, seed: int) -> None:
    """Refuse task data that ``generate`` wrote with other task settings (or seed) than params.yaml has now.

    ``dvc repro`` reruns ``generate`` after such a change, but a stage run on its own (``dvc repro -s``)
    would otherwise read stale data without a word: K = 50 evaluated with the 20 support points stored.
    """
    manifest = load_manifest(data_dir)
    now = json.loads(json.dumps({"seed": seed, **{f"tasks.{k}": v for k, v in tasks.model_dump().items()}}))
    stored = manifest.get("tasks") if isinstance(manifest.get("tasks"), dict) else {}
    then = {"seed": manifest.get("seed"), **{f"tasks.{k}": v for k, v in stored.items()}}
    changed = [key for key in now if now[key] != then.get(key)]
    if changed:
        key = changed[0]
        more = f" (and {len(changed) - 1} more key{'s' if len(changed) > 2 else ''})" if len(changed) > 1 else ""
        raise TaskDataError(
            f"params.yaml: {key} is {now[key]!r}, but {Path(data_dir) / 'manifest.json'} was generated with "
            f"{then.get(key)!r}{more}; run the generate stage first (dvc repro)"
        )


def load_split(data_dir: str | Path, name: str) -> dict[str, np.ndarray]:
    """Load one split, checking it against the manifest (hash, array names, shapes, dtype, finiteness)."""
    manifest = load_manifest(data_dir)
    entry = manifest["splits"].get(name)
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
        dtype = entry["dtypes"].get(key, "float32")
        if list(arr.shape) != expected[key] or str(arr.dtype) != dtype:
            raise TaskDataError(
                f"{path}: array {key!r} is {arr.dtype}{list(arr.shape)}, expected {dtype}{expected[key]}"
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise TaskDataError(f"{path}: array {key!r} contains NaN or infinite values")
    if "images" in arrays:
        check_indices(path, arrays)
    return arrays


def check_indices(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Labels, class sources and episode indices of a classification split must point inside its arrays."""
    n, n_classes = len(arrays["images"]), len(arrays["class_sources"])
    if arrays["labels"].min(initial=0) < 0 or arrays["labels"].max(initial=0) >= n_classes:
        raise TaskDataError(f"{path}: array 'labels' has class indices outside the {n_classes} classes")
    if arrays["class_sources"].min(initial=0) < 0:
        raise TaskDataError(f"{path}: array 'class_sources' has negative source indices")
    for key in ("support_index", "query_index"):
        if key in arrays and arrays[key].size and not (arrays[key].min() >= 0 and arrays[key].max() < n):
            raise TaskDataError(f"{path}: array {key!r} points outside the {n} images")
