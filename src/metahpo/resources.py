"""What this machine offers a stage: memory, disk space and cores, for the guards that refuse work up front."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def physical_memory() -> int:
    """Bytes of physical RAM."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def free_disk(path: Path) -> int:
    """Bytes free on the file system that ``path`` (or its nearest existing parent) lives on."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gib(n: float) -> str:
    """Bytes in GiB, one decimal."""
    return f"{n / 2**30:.1f} GiB"
