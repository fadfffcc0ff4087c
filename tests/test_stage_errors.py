"""Stage scripts on bad input: a one-line message naming the key or file, exit 2, no output written."""

from __future__ import annotations

import sys

import pytest

from project import copy_project, run, write_params


@pytest.fixture
def project(tmp_path, tiny_params):
    return copy_project(tmp_path, tiny_params)


def _files(root):
    return {p.relative_to(root) for p in root.rglob("*") if ".git" not in p.parts and "src" not in p.parts}


@pytest.mark.parametrize(
    ("stage", "section", "key", "value", "named"),
    [
        ("generate", "tasks", "shots", -3, "tasks.shots"),
        ("search", "meta", "algorithm", "reptile", "meta.algorithm"),
        ("train", "meta", "inner_lr", -0.5, "meta.inner_lr"),
        ("search", "search", "space", {}, "search.space"),
        ("evaluate", "evaluate", "max_steps", "ten", "evaluate.max_steps"),
    ],
)
def test_bad_params_exit_2_before_any_work(project, tiny_params, stage, section, key, value, named):
    tiny_params[section][key] = value
    write_params(project, tiny_params)
    before = _files(project)
    proc = run(project, sys.executable, f"stages/{stage}.py", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: params.yaml: " + named)
    assert _files(project) == before


def test_missing_section_is_named(project, tiny_params):
    del tiny_params["search"]
    write_params(project, tiny_params)
    proc = run(project, sys.executable, "stages/generate.py", check=False)
    assert proc.returncode == 2 and "params.yaml: search: missing" in proc.stderr


def test_missing_task_data_names_the_file(project):
    before = _files(project)
    proc = run(project, sys.executable, "stages/search.py", check=False)
    assert proc.returncode == 2
    assert "data/tasks/manifest.json: missing; run the generate stage first" in proc.stderr
    assert _files(project) == before


def test_sigterm_mid_search_leaves_only_complete_files(project, tiny_params):
    import signal
    import subprocess
    import time

    import pandas as pd

    from project import env_for

    tiny_params["search"].update(n_calls=50, iterations=400)
    write_params(project, tiny_params)
    run(project, sys.executable, "stages/generate.py")
    proc = subprocess.Popen(
        [sys.executable, "stages/search.py"], cwd=project, env=env_for(project), stderr=subprocess.PIPE, text=True
    )
    log = project / "reports/search/trials.csv"
    deadline = time.monotonic() + 120
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "search stage interrupted (received SIGTERM)" in stderr
    assert not (project / "reports/search/best.json").exists()
    trials = pd.read_csv(log)  # whatever was written is a complete log of finished trials
    assert 1 <= len(trials) < 50 and trials["trial"].is_monotonic_increasing and trials["trial"].max() < 50
    assert trials["status"].isin(["ok", "failed"]).all()
    assert not [p.name for p in log.parent.iterdir() if p.name.endswith(".tmp")]


def _live_children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` and that have not exited (zombies excluded), from /proc."""
    from pathlib import Path

    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


def _is_running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie has)."""
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_mid_search_takes_the_pool_workers_along(project, tiny_params):
    """kill -9 of the search stage: its worker processes exit within seconds instead of training on."""
    import os
    import signal
    import subprocess
    import time

    from project import env_for

    tiny_params["search"].update(n_calls=50, iterations=400, workers=2)
    write_params(project, tiny_params)
    run(project, sys.executable, "stages/generate.py")
    proc = subprocess.Popen([sys.executable, "stages/search.py"], cwd=project, env=env_for(project))
    deadline = time.monotonic() + 120
    while not (project / "reports/search/trials.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _live_children(proc.pid)
    assert len(workers) >= 2, "the pool's workers should be running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while [w for w in workers if _is_running(w)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [w for w in workers if _is_running(w)], "pool workers outlived the killed search stage"
