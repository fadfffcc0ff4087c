"""Trained learners on disk: ``model.pt`` (a state dict) plus ``config.json`` to rebuild it."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from metahpo.atomic import write_bytes, write_json
from metahpo.errors import ArtifactError, first_line
from metahpo.json_files import load_json_object
from metahpo.learners import ARCHITECTURES, LEARNER_ALGORITHMS
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.params import TUNABLE, Choice, Int, Rule, section


def _shape(v, path) -> list[str]:
    ok = isinstance(v, list) and 1 <= len(v) <= 2 and all(isinstance(n, int) and 1 <= n <= 4096 for n in v)
    return [] if ok else [f"{path}: expected a list of one or two sizes, got {v!r}"]


LEARNER_SCHEMA = section(
    {
        "algorithm": Rule(Choice(*LEARNER_ALGORITHMS)),
        **{k: TUNABLE[k][1] for k in ("hidden", "layers", "inner_lr", "inner_steps")},
        "arch": Rule(Choice(*ARCHITECTURES)),
        "input_shape": _shape,
        "outputs": Rule(Int(1, 1000)),
        "loss": Rule(Choice("mse", "cross_entropy")),
        **{k: TUNABLE[k][1] for k in ("representation", "rule_hidden", "inner_rates", "extra_steps")},
    }
)


def save_learner(learner: MetaLearner, out_dir: str | Path, extra: dict | None = None) -> None:
    """Write the state dict and the config (plus ``extra`` information) of a trained learner."""
    out = Path(out_dir)
    # Saved through a buffer: given a path, torch names the archive's folder after the (temporary,
    # random) file name, so the bytes would not repeat; and a failed write is then a plain OSError.
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in learner.state_dict().items()}, buffer)
    write_bytes(out / "model.pt", buffer.getvalue())
    write_json(out / "config.json", {"learner": learner.config.to_dict(), **(extra or {})})


def _read_config(config_path: Path) -> LearnerConfig:
    raw = load_json_object(config_path, ArtifactError, "run the train stage first").get("learner")
    problems = LEARNER_SCHEMA(raw, "learner")
    if problems:
        raise ArtifactError(f"{config_path}: {problems[0]}")
    return LearnerConfig(**{**raw, "input_shape": tuple(raw["input_shape"])})


def _check_family(config: LearnerConfig, family, config_path: Path) -> None:
    """Refuse a config that the task family of params.yaml cannot evaluate (trained for other tasks)."""
    expected = {
        "loss": family.loss,
        "outputs": family.outputs,
        "input_shape": tuple(family.input_shape),
        "arch": family.params.model.arch,
    }
    for key, value in expected.items():
        if getattr(config, key) != value:
            raise ArtifactError(
                f"{config_path}: learner.{key} is {getattr(config, key)!r}, but tasks.family {family.tasks.family} "
                f"with these params needs {value!r}; retrain (dvc repro train)"
            )
    if config.algorithm not in family.algorithms:
        raise ArtifactError(
            f"{config_path}: learner.algorithm {config.algorithm} does not apply to tasks.family "
            f"{family.tasks.family} (expected one of {', '.join(family.algorithms)})"
        )


def load_learner(model_dir: str | Path, device: torch.device, family=None) -> MetaLearner:
    """Rebuild a learner from ``model_dir``; never unpickles (``weights_only=True``).

    With ``family`` (see :mod:`metahpo.learners.family`), a config for another task family is refused. The
    weights' shapes are checked against the config on PyTorch's ``meta`` device, which allocates
    nothing, so a config with absurd sizes is refused before any memory is taken.
    """
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / "config.json", model_dir / "model.pt"
    config = _read_config(config_path)
    if family is not None:
        _check_family(config, family, config_path)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{weights_path}: missing; run the train stage first") from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad file
        raise ArtifactError(f"{weights_path}: unreadable ({first_line(exc)})") from None
    with torch.device("meta"):
        shapes = MetaLearner(config, torch.Generator().manual_seed(0), "meta").state_dict()
    if not isinstance(state, dict) or {k: getattr(v, "shape", None) for k, v in state.items()} != {
        k: v.shape for k, v in shapes.items()
    }:
        raise ArtifactError(f"{weights_path}: does not match {config_path} (other tensors or shapes)")
    for name, value in state.items():
        if value.dtype != torch.float32 or not torch.isfinite(value).all():
            raise ArtifactError(f"{weights_path}: tensor {name!r} is not finite float32")
    learner = MetaLearner(config, torch.Generator().manual_seed(0), device)
    learner.load_state_dict(state, strict=True)
    return learner
