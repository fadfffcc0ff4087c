"""Write files so that they appear complete or not at all (temporary file, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from metahpo.errors import OutputError

_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """The mode ``open`` gives a new file under the process's current umask (mkstemp always uses 0600)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        with _UMASK_LOCK:  # reading the umask sets it: two readers at once could leave it changed
            umask = os.umask(0o077)
            os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, else removed."""
    target = Path(path)
    with unwritable(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with unwritable(target):
            os.chmod(tmp_path, file_mode())
            yield tmp_path
            os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def unwritable(target: Path) -> Iterator[None]:
    """Turn a failed write (disk full, file-size limit, permissions) into an :class:`OutputError` naming ``target``."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder next to ``path``; on success it replaces ``path`` whole, else is removed.

    A stage that writes a folder of outputs fills the staging folder and leaves ``path`` complete or
    absent, whenever it is interrupted; a staging folder left by ``kill -9`` is removed by the next run.
    """
    target = Path(path)
    staging = target.parent / f".{target.name}.partial"
    with unwritable(target):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    try:
        try:
            yield staging
        except OSError as exc:  # a write into the staging folder, named as the output it was for
            where = str(exc.filename or staging).replace(str(staging), str(target))
            raise OutputError(f"{where}: cannot write ({exc.strerror or exc})") from None
        except OutputError as exc:
            raise OutputError(str(exc).replace(str(staging), str(target))) from None
        with unwritable(target):
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data, sort_keys: bool = True) -> None:
    """Atomically write ``data`` as indented JSON, its keys sorted unless ``sort_keys`` is false."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
