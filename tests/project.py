"""Helpers for tests that run the real pipeline in a temporary copy of the project."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = (
    "src",
    "stages",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots_template.html",
    ".dvc/plots",
    ".dvcignore",
    ".gitignore",
    "data/raw/README.md",
    "recipes",
)


def env_for(project: Path) -> dict:
    """Environment whose ``python`` is this interpreter and whose ``metahpo`` is the copy's."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(project / "src")
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(project: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in ``project``; with ``check``, fail with its output if it exits non-zero."""
    proc = subprocess.run(cmd, cwd=project, env=env_for(project), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real DVC command line in ``project``."""
    return run(project, sys.executable, "-m", "dvc", *args, check=check)


def git(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Run git in ``project``."""
    return run(project, "git", *args)


def copy_project(dest: Path, params: dict | None = None) -> Path:
    """Copy the project into ``dest`` (optionally with other params) as a fresh git repository."""
    for name in PROJECT_FILES:
        src = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, target)
    if params is not None:
        write_params(dest, params)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.name", "metahpo tests")
    git(dest, "config", "user.email", "tests@metahpo.invalid")
    return dest


def write_params(project: Path, params: dict) -> None:
    """Overwrite the project's params.yaml."""
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def ran_stages(repro: subprocess.CompletedProcess) -> list[str]:
    """Names of the stages that a ``dvc repro`` actually ran."""
    out = repro.stdout + repro.stderr
    return [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")]


def commit_all(project: Path, message: str) -> None:
    """Stage everything git should track and commit it."""
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def kill_search_when(project: Path, ready, timeout: float = 300) -> None:
    """Start ``stages/search.py`` in ``project``; SIGKILL it once ``ready()`` holds (or after ``timeout`` s)."""
    proc = subprocess.Popen(
        [sys.executable, "stages/search.py"], cwd=project, env=env_for(project), stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
