"""Process set-up shared by the stage scripts: threads, device, and clean failure."""

from __future__ import annotations

import signal
import sqlite3
import sys
import time
from collections.abc import Callable

import torch

from metahpo.errors import ConfigError, DivergenceError, InputError, OutputError, WorkerError
from metahpo.params import Params, load_params


class StageInterrupted(KeyboardInterrupt):
    """Raised in place of SIGTERM so that temporary files are cleaned up on the way out."""


def setup(params: Params) -> torch.device:
    """Fix the thread count and deterministic kernels, then return the device to run on."""
    torch.set_num_threads(params.threads)
    # torch.use_deterministic_algorithms(True) also sets torch.compile's option, importing the compiler (about
    # 1.5 s in every stage and worker); nothing here compiles, so only the eager kernels' switch is set.
    torch._C._set_deterministic_algorithms(True, warn_only=False)
    return resolve_device(params.device)


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU; ``cuda`` without a GPU is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: device: cuda requested but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def _raise_interrupted(signum, frame):
    raise StageInterrupted(f"received {signal.Signals(signum).name}")


def run_stage(name: str, work: Callable[[Params, torch.device | None], None], uses_torch: bool = True) -> None:
    """Validate params, set up the process, run ``work(params, device)``; exit cleanly on any failure.

    ``uses_torch=False`` skips the thread and device set-up (the stage then does not read those keys).
    Input errors exit with code 2, divergence and failed writes with 1, SIGINT/SIGTERM with 130, each
    with one line on stderr. Outputs are written atomically, so an interrupted stage leaves none
    half-written. A file-size limit (``ulimit -f``) fails the write instead of killing the process
    (SIGXFSZ is ignored, here and in the workers, which inherit it).
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    start = time.perf_counter()
    try:
        params = load_params()
        work(params, setup(params) if uses_torch else None)
        print(f"{name}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except DivergenceError as exc:
        print(f"error: {name}: training diverged: {exc}", file=sys.stderr)
        sys.exit(1)
    except OutputError as exc:
        print(f"error: {name}: {exc}; nothing half-written was kept", file=sys.stderr)
        sys.exit(1)
    except WorkerError as exc:
        print(f"error: {name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # a write outside the atomic writer (e.g. DVCLive's logs)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {name}: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except sqlite3.OperationalError as exc:  # DVCLive opens the DVC repository, whose state is in SQLite
        print(f"error: {name}: DVC's state database could not be written ({exc}); check the free disk space "
              "and file-size limits", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    except KeyboardInterrupt as exc:
        print(f"error: {name} stage interrupted ({exc or 'SIGINT'}); no partial outputs were kept", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
