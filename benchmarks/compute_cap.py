"""The README's own-images recipe on an Omniglot-like folder, with and without a cost cap.

Builds a synthetic image folder in the Omniglot layout (``root/<alphabet>/<character>/*.png``: every
character is a few random pen strokes on 28x28, every image of it the strokes shifted by up to two pixels
and drawn with a random width), then runs the pipeline's stages (generate, search, train, evaluate) in a
temporary copy of the project once per variant: the search uncapped, capped with ``search.max_cost``,
and capped with rungs measured in compute (``search.fidelity_unit: compute``). It prints, per variant, the
chosen setting, its estimated cost against the untuned baseline's, the predicted and measured final
training time of the tuned learner, the held-out accuracy and the wall time of each stage.

The scale is small so that a variant takes minutes on one core: 14x14 images, 5-way 1-shot, a 4-block
conv net of 16 channels as the baseline (meta-batch 4, 2 query images per class), successive halving over
one bracket of 9 trials in rungs of 100, 300 and 900 iterations, 1,000 final iterations.

Usage: ``python benchmarks/compute_cap.py [--cap 3] [--variants uncapped capped compute]``. Prints markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SIDE = 28


def character(rng: np.random.Generator) -> list[tuple[float, float, float, float]]:
    """A character: two to four strokes between random points of the 28x28 canvas."""
    return [tuple(rng.uniform(4, SIDE - 4, 4)) for _ in range(rng.integers(2, 5))]


def draw(strokes, rng: np.random.Generator) -> Image.Image:
    """One hand-drawn copy: the strokes shifted by up to two pixels, a random pen width, white on black."""
    image = Image.new("L", (SIDE, SIDE), 0)
    pen = ImageDraw.Draw(image)
    dx, dy = rng.integers(-2, 3, 2)
    width = int(rng.integers(1, 4))
    for x0, y0, x1, y1 in strokes:
        pen.line((x0 + dx, y0 + dy, x1 + dx, y1 + dy), fill=255, width=width)
    return image


def make_folder(root: Path, alphabets: int = 8, characters: int = 6, images: int = 10, seed: int = 0) -> None:
    """``root/alphabet<a>/character<c>/<i>.png``."""
    rng = np.random.default_rng(seed)
    for a in range(alphabets):
        for c in range(characters):
            folder = root / f"alphabet{a}" / f"character{c}"
            folder.mkdir(parents=True)
            strokes = character(rng)
            for i in range(images):
                draw(strokes, rng).save(folder / f"{i}.png")


def recipe(params: dict, root: str) -> dict:
    """The README's own-images command (``tasks.*``, ``model.*``) at this benchmark's scale."""
    params["tasks"].update(family="image_folder", root=root, image_size=14, shots=1, query=5, eval_shots=[1, 5])
    params["tasks"]["splits"].update(meta_val=100, meta_test=200)
    params["model"].update(arch="conv", hidden=16, layers=4)
    params["meta"].update(inner_lr=0.4, meta_batch_size=4, query=2)
    params["search"].update(
        fidelity="successive_halving", iterations=900, min_iterations=100, eta=3, n_calls=9, n_initial_points=5,
        workers=1, objective="accuracy",
    )  # fmt: skip
    params["search"]["space"] = {
        "algorithm": {"type": "categorical", "values": ["maml", "fomaml", "metasgd", "anil"]},
        "inner_lr": {"type": "real", "low": 0.01, "high": 1.0, "prior": "log-uniform"},
        "outer_lr": {"type": "real", "low": 0.0003, "high": 0.01, "prior": "log-uniform"},
        "inner_steps": {"type": "integer", "low": 1, "high": 3, "prior": "uniform"},
        "hidden": {"type": "integer", "low": 8, "high": 48, "prior": "uniform"},
    }
    params["train"].update(iterations=1000, log_every=100, workers=1)
    params["train"]["finetune"].update(lr_points=4, max_steps=3)
    params["evaluate"]["max_steps"] = 3
    return params


VARIANTS = {
    "uncapped": {},
    "capped": {"max_cost": None},  # the cap is filled in from --cap
    "compute": {"max_cost": None, "fidelity_unit": "compute"},
}


def run_variant(name: str, changes: dict, folder: Path, work: Path) -> dict:
    """Run generate, search, train and evaluate for one variant; return what the table shows."""
    project = work / name
    for part in ("src", "stages"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(folder, project / "data/raw/letters")
    params = recipe(yaml.safe_load((ROOT / "params.yaml").read_text()), "data/raw/letters")
    params["search"].update(changes)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    seconds, logs = {}, {}
    for stage in ("generate", "search", "train", "evaluate"):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=project, env=env, capture_output=True,
                              text=True)  # fmt: skip
        seconds[stage] = time.perf_counter() - start
        logs[stage] = proc.stderr
        if proc.returncode:
            raise SystemExit(f"{name}: {stage} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    trials = (project / "reports/search/trials.csv").read_text().splitlines()
    timing = json.loads((project / "reports/train/timing.json").read_text())
    return {
        "best": json.loads((project / "reports/search/best.json").read_text()),
        "metrics": json.loads((project / "reports/metrics.json").read_text()),
        "ci": json.loads((project / "reports/metrics_ci95.json").read_text()),
        "timing": timing,
        "too_costly": sum(",too_costly," in line for line in trials),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=float, default=3.0, help="search.max_cost of the capped variants")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_folder(work / "letters")
        results = {}
        for name in args.variants:
            changes = {k: (args.cap if k == "max_cost" else v) for k, v in VARIANTS[name].items()}
            results[name] = run_variant(name, changes, work / "letters", work)
            print(f"{name}: done in {sum(results[name]['seconds'].values()):.0f} s", file=sys.stderr)
    print(f"Cap: search.max_cost = {args.cap:g} (capped and compute variants).\n")
    print("| variant | chosen setting | est. cost vs untuned | too costly | tuned 1-shot acc. | untuned 1-shot acc. | "
          "predicted train s | measured train s | search s | train stage s | total s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        point, tuned = r["best"]["point"], r["timing"]["tuned"]
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
        acc = {k: f"{r['metrics'][k]['k1']:.3f} ± {r['ci'][k]['k1_ci95']:.3f}" for k in ("tuned", "default")}
        predicted = tuned["predicted_seconds"]
        print(f"| {name} | {shown} | {tuned['cost_vs_untuned']:.2f}x | {r['too_costly']} | {acc['tuned']} | "
              f"{acc['default']} | {'-' if predicted is None else f'{predicted:.0f}'} | {tuned['seconds']:.0f} | "
              f"{r['seconds']['search']:.0f} | {r['seconds']['train']:.0f} | "
              f"{sum(r['seconds'].values()):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
