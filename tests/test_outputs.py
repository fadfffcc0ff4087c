"""Every output of a stage is complete or absent: a failed write or a killed stage leaves nothing half-written."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from project import commit_all, copy_project, dvc, env_for, run, write_params

STAGE_OUTPUTS = ("data/tasks", "models", "reports/train", "reports/plots", "reports/figures")


def _tree(root: Path, rel: str) -> dict[str, str] | None:
    """File digests under ``root/rel`` (None when it does not exist)."""
    base = root / rel
    if not base.exists():
        return None
    return {
        str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() for p in base.rglob("*") if p.is_file()
    }


def _leftovers(root: Path) -> list[str]:
    """Staging folders and temporary files anywhere in the project."""
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith((".partial", ".tmp"))]


def _stage(project: Path, stage: str, max_file_bytes: int) -> subprocess.CompletedProcess:
    """Run a stage script under a file-size limit (``ulimit -f``), as a full disk would refuse a write."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**env_for(project), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, f"stages/{stage}.py"], cwd=project, env=env, capture_output=True, text=True,
        preexec_fn=limit, timeout=600,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path, tiny_params):
    root = copy_project(tmp_path, tiny_params)
    commit_all(root, "project")  # DVCLive, which train logs with, needs a commit in a git repository
    return root


def test_a_failed_write_is_one_line_naming_the_file_and_leaves_nothing(project):
    proc = _stage(project, "generate", max_file_bytes=4096)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: generate: data/tasks/"), proc.stderr
    assert "cannot write (File too large)" in lines[0]
    assert not (project / "data/tasks").exists() and not _leftovers(project)


def test_a_file_size_limit_in_train_is_one_line_and_keeps_no_partial_models_or_curves(project):
    run(project, sys.executable, "stages/generate.py")
    run(project, sys.executable, "stages/search.py")
    proc = _stage(project, "train", max_file_bytes=3000)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: train: ") and "Traceback" not in proc.stderr, proc.stderr
    assert not (project / "models").exists() and not (project / "reports/train").exists()
    assert not _leftovers(project)


def test_a_full_disk_while_saving_a_model_names_the_model_file(project, monkeypatch, capsys):
    """ENOSPC on the write of a model: one line naming the output file (not its staging copy), nothing kept."""
    import errno

    from metahpo.runtime import run_stage
    from metahpo.search.final_training import train_stage

    run(project, sys.executable, "stages/generate.py")
    run(project, sys.executable, "stages/search.py")
    params = (project / "params.yaml").read_text().replace("workers: 2", "workers: 1")
    (project / "params.yaml").write_text(params)
    real_write = Path.write_bytes

    def full_disk(path, data):
        if path.name.startswith(".model.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, data)

    monkeypatch.chdir(project)
    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        run_stage("train", train_stage)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1
    assert err[-1].startswith("error: train: models/tuned/model.pt: cannot write (No space left on device)"), err
    assert not (project / "models").exists() and not (project / "reports/train").exists()
    assert not _leftovers(project)


def test_a_killed_train_stage_leaves_the_previous_outputs_whole(project, tiny_params):
    """Killed while the learners train (SIGTERM, then kill -9), the stage leaves models/ and reports/train/ whole."""
    for stage in ("generate", "search", "train"):
        run(project, sys.executable, f"stages/{stage}.py")
    before = {rel: _tree(project, rel) for rel in ("models", "reports/train")}
    tiny_params["train"].update(iterations=20_000, log_every=10)
    write_params(project, tiny_params)
    logged = project / "reports/.train.partial/tuned/plots/metrics/meta_loss.tsv"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "stages/train.py"], cwd=project, env=env_for(project),
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while not logged.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logged.exists(), "training should have started logging"
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL), stderr
        assert {rel: _tree(project, rel) for rel in before} == before
        if sig == signal.SIGTERM:
            assert not _leftovers(project), "an interrupted stage removes its staging folders"
    assert _leftovers(project)  # what kill -9 left
    tiny_params["train"].update(iterations=30)
    write_params(project, tiny_params)
    run(project, sys.executable, "stages/train.py")  # the next run clears it
    assert not _leftovers(project)
    assert _tree(project, "models") != before["models"] and (project / "reports/train/tuned").is_dir()


@pytest.mark.e2e
def test_dvc_repro_keeps_the_previous_outputs_of_a_stage_that_fails_or_is_killed(project, tiny_params):
    """Under `dvc repro`, a stage refused by bad params, or killed with -9, leaves every previous output whole."""
    dvc(project, "repro")
    outputs = ("data/tasks", "models", "reports")
    before = {rel: _tree(project, rel) for rel in outputs}
    assert before["reports"]["evaluation.json"] and before["reports"]["metrics.json"]
    tiny_params["evaluate"]["task_chunk"] = 0
    write_params(project, tiny_params)
    failed = dvc(project, "repro", check=False)
    assert failed.returncode != 0 and "evaluate.task_chunk" in failed.stderr + failed.stdout
    assert {rel: _tree(project, rel) for rel in outputs} == before
    assert "evaluate:" in dvc(project, "status").stdout  # the old outputs are not taken for new ones

    tiny_params["evaluate"]["task_chunk"] = 64
    tiny_params["train"].update(iterations=20_000, log_every=10)
    write_params(project, tiny_params)
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train"], cwd=project, env=env_for(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    logged = project / "reports/.train.partial/tuned/plots/metrics/meta_loss.tsv"
    deadline = time.monotonic() + 300
    while not logged.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged.exists(), "training should have started logging"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    after = {rel: _tree(project, rel) for rel in outputs}
    train_outputs = [k for k in before["reports"] if k.startswith(("train/", "evaluation", "metrics", "plots/"))]
    assert after["models"] == before["models"] and after["data/tasks"] == before["data/tasks"]
    assert {k: after["reports"].get(k) for k in train_outputs} == {k: before["reports"][k] for k in train_outputs}


def _pool_workers(pid: int) -> list[int]:
    """The process-pool workers (spawned) among ``pid``'s live children, from /proc."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
            workers.append(int(stat.parent.name))
    return workers


@pytest.mark.e2e
def test_a_train_worker_killed_mid_training_is_replaced_and_its_learners_retrained(project, tiny_params):
    """kill -9 of one of train's pool workers: the pool is replaced, the lost learners rerun, the stage succeeds."""
    tiny_params["train"].update(iterations=1000, log_every=10, workers=2)
    write_params(project, tiny_params)
    for stage in ("generate", "search"):
        run(project, sys.executable, f"stages/{stage}.py")
    proc = subprocess.Popen([sys.executable, "stages/train.py"], cwd=project, env=env_for(project),
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    logged = project / "reports/.train.partial/tuned/plots/metrics/meta_loss.tsv"
    deadline = time.monotonic() + 300
    while not (logged.exists() and _pool_workers(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = _pool_workers(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert (project / "models/tuned/model.pt").exists() and (project / "models/kinds.json").exists()
    assert (project / "reports/train/tuned/plots/metrics/meta_loss.tsv").exists() and not _leftovers(project)
