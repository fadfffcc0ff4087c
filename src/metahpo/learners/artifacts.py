"""Trained learners on disk: ``model.pt`` (a state dict) plus ``config.json`` to rebuild it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from metahpo.atomic import atomic_path, write_json
from metahpo.errors import ArtifactError
from metahpo.learners import ARCHITECTURES, LEARNER_ALGORITHMS
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.validation import TUNABLE, choice, integer, section


def _shape(v, path) -> list[str]:
    ok = isinstance(v, list) and 1 <= len(v) <= 2 and all(isinstance(n, int) and 1 <= n <= 4096 for n in v)
    return [] if ok else [f"{path}: expected a list of one or two sizes, got {v!r}"]


LEARNER_SCHEMA = section(
    {
        "algorithm": choice(*LEARNER_ALGORITHMS),
        **{k: TUNABLE[k][1] for k in ("hidden", "layers", "inner_lr", "inner_steps")},
        "arch": choice(*ARCHITECTURES),
        "input_shape": _shape,
        "outputs": integer(1, 1000),
        "loss": choice("mse", "cross_entropy"),
    }
)


def save_learner(learner: MetaLearner, out_dir: str | Path, extra: dict | None = None) -> None:
    """Write the state dict and the config (plus ``extra`` information) of a trained learner."""
    out = Path(out_dir)
    # Saved through a file handle: given a path, torch names the archive's folder after the (here
    # temporary, random) file name, and the same weights would not give the same bytes.
    with atomic_path(out / "model.pt") as tmp, open(tmp, "wb") as fh:
        torch.save({k: v.detach().cpu() for k, v in learner.state_dict().items()}, fh)
    write_json(out / "config.json", {"learner": learner.config.to_dict(), **(extra or {})})


def load_learner(model_dir: str | Path, device: torch.device) -> MetaLearner:
    """Rebuild a learner from ``model_dir``; never unpickles (``weights_only=True``)."""
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / "config.json", model_dir / "model.pt"
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))["learner"]
    except FileNotFoundError:
        raise ArtifactError(f"{config_path}: missing; run the train stage first") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{config_path}: not a valid learner config ({exc!r})") from None
    problems = LEARNER_SCHEMA(raw, "learner")
    if problems:
        raise ArtifactError(f"{config_path}: {problems[0]}")
    config = LearnerConfig(**{**raw, "input_shape": tuple(raw["input_shape"])})
    learner = MetaLearner(config, torch.Generator().manual_seed(0), device)
    try:
        state = torch.load(weights_path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{weights_path}: missing; run the train stage first") from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad file
        raise ArtifactError(f"{weights_path}: unreadable ({str(exc).splitlines()[0]})") from None
    try:
        learner.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError) as exc:
        raise ArtifactError(f"{weights_path}: does not match {config_path} ({str(exc).splitlines()[0]})") from None
    for name, value in state.items():
        if value.dtype != torch.float32 or not torch.isfinite(value).all():
            raise ArtifactError(f"{weights_path}: tensor {name!r} is not finite float32")
    return learner
