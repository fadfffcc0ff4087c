"""What a worker hands back cannot run code on the driver, and a Dask cluster can be reached over TLS only."""

from __future__ import annotations

import datetime
import io
import pickle
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pandas as pd
import pytest
import synthetic_trials as st
import torch

from metahpo.errors import DivergenceError, OutputError
from metahpo.executors import JobError, RefusedResult, TrialRunner, read_plain, security
from metahpo.search.driver import Search
from metahpo.search.trial import TrialResult

from conftest import typed


@pytest.fixture
def search_params(tiny_params):
    tiny_params["search"].update(n_calls=4, n_initial_points=4, workers=1)
    tiny_params["search"]["space"] = {
        "inner_lr": {"type": "real", "low": 0.001, "high": 1.0, "prior": "log-uniform"},
        "hidden": {"type": "integer", "low": 10, "high": 100, "prior": "uniform"},
    }
    return tiny_params


def run(params, tmp_path, trial_fn, name="s"):
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    search = Search(typed(params), {"meta_train": {}, "meta_val": {}}, 10.0, tmp_path / name, manifest, trial_fn)
    return search.run(), pd.read_csv(tmp_path / name / "trials.csv")


def test_the_evil_object_is_really_evil(tmp_path):
    """The guard of every test below: unpickled as Dask or a process pool would, it writes its file."""
    target = tmp_path / "pwned"
    pickle.loads(pickle.dumps(st.Evil(str(target))))
    assert target.exists()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("trial_fn", [st.returns_evil_on_trial_1, st.evil_state_on_trial_1, st.raises_evil_on_trial_1])
def test_a_hostile_result_runs_nothing_here_and_fails_its_trial(
    search_params, tmp_path, monkeypatch, workers, trial_fn
):
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    search_params["search"]["workers"] = workers
    _, trials = run(search_params, tmp_path, trial_fn)
    assert not (tmp_path / "pwned").exists()
    assert list(trials["status"]) == ["ok", "failed", "ok", "ok"]
    error = trials.loc[1, "error"]
    assert "\n" not in error and ("result refused" in error or "EvilError: evil" in error)


def saved(record) -> bytes:
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return buffer.getvalue()


def test_read_plain_refuses_all_but_plain_data(tmp_path):
    target = tmp_path / "pwned"
    for blob in (pickle.dumps(st.Evil(str(target))), saved({"value": st.Evil(str(target))})):
        with pytest.raises(RefusedResult, match="not plain data"):
            read_plain(blob)
    assert not target.exists()
    with pytest.raises(RefusedResult, match="expected bytes"):
        read_plain(st.Evil(str(target)))
    for record in ({"value": 1, "error": ["X", "y"]}, [1], {"other": 1}, {"error": "text"}):
        with pytest.raises(RefusedResult):
            read_plain(saved(record))
    assert read_plain(saved({"value": {"a": [1.5, torch.ones(2)]}}))["a"][0] == 1.5
    with pytest.raises(OutputError, match="^disk full$"):
        read_plain(saved({"error": ["OutputError", "disk full\nmore"]}))
    with pytest.raises(JobError, match="^ZeroDivisionError: boom$"):
        read_plain(saved({"error": ["ZeroDivisionError", "boom"]}))


@pytest.mark.parametrize(
    "change",
    [
        {"trial": 2},
        {"status": "winner"},
        {"objective": "0.1"},
        {"objectives": [0.1, "x"]},
        {"states": {"0": {}}},
        {"states": {0: [1]}},
        {"error": 3},
        {"extra": 1},
    ],
)
def test_a_trial_result_is_checked_field_by_field(change):
    from dataclasses import asdict

    record = {**asdict(TrialResult(1, "ok", 0.5, [0.5])), **change}
    with pytest.raises(ValueError, match="result refused"):
        TrialResult.from_plain(record, 1)


def test_one_lost_worker_does_not_fail_the_trial_beside_it(search_params, tmp_path, monkeypatch):
    """retries: 0, and trial 1 kills its worker while trial 0 runs: both are lost, rerun, and neither is blamed."""
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    search_params["search"].update(workers=2, retries=0)
    _, trials = run(search_params, tmp_path, st.kills_its_worker_once_on_trial_1)
    assert (tmp_path / "died").exists()
    assert (trials["status"] == "ok").all(), trials["error"].tolist()
    runs = sorted(int(line) for line in (tmp_path / "runs").read_text().split())
    assert runs == [0, 0, 1, 1, 2, 3]  # trial 0 was lost with the pool, not finished before it broke


def test_a_job_that_kills_its_worker_alone_is_blamed(search_params, tmp_path, monkeypatch):
    monkeypatch.setenv(st.MARKER_DIR, str(tmp_path))
    search_params["search"].update(workers=2, retries=0)
    _, trials = run(search_params, tmp_path, st.always_dies_on_trial_1)
    assert list(trials["status"]) == ["ok", "failed", "ok", "ok"]
    assert trials.loc[1, "error"].startswith("worker lost: BrokenProcessPool")


# --- Dask -------------------------------------------------------------------------------------------


def make_certificates(folder):
    """A self-signed CA and one certificate it signs for 127.0.0.1 (server and client use): their PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject, issuer, public_key, signing_key, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("metahpo test CA", "metahpo test CA", ca_key.public_key(), ca_key, ca=True)
    cert = build("127.0.0.1", "metahpo test CA", key.public_key(), ca_key, ca=False)
    pem = serialization.Encoding.PEM
    files = {"ca_file": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca_file"].write_bytes(ca.public_bytes(pem))
    files["cert"].write_bytes(cert.public_bytes(pem))
    files["key"].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return {k: str(v) for k, v in files.items()}


@pytest.mark.e2e
def test_trials_run_through_a_tls_cluster_that_refuses_plain_clients(tmp_path, monkeypatch):
    from distributed import Client

    monkeypatch.setenv(
        "PYTHONPATH", st.__file__.rsplit("/", 1)[0] + ":" + __import__("os").environ.get("PYTHONPATH", "")
    )
    tls = make_certificates(tmp_path)
    with TrialRunner("dask", 1, None, tls) as runner:
        value = runner.submit(st.bowl_value, {"inner_lr": 0.03, "hidden": 50}).result()
        address = runner.executor.client.scheduler.address
        assert value == pytest.approx(0.01) and address.startswith("tls://127.0.0.1:")
        with pytest.raises(TypeError, match="TLS expects"):
            Client(address, timeout=3)  # no certificate at all: Dask will not even try
        (tmp_path / "other").mkdir()
        stranger = security(make_certificates(tmp_path / "other"))  # a certificate from another CA
        with pytest.raises((OSError, TimeoutError)):
            Client(address, timeout=3, security=stranger)


PRELOAD = """
import pathlib
import metahpo.executors

class Evil:
    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path({target!r}),))

def dask_setup(worker):
    metahpo.executors.call_plain = lambda fn, *args: Evil()
"""


@pytest.mark.e2e
def test_a_dask_worker_that_sends_a_pickle_runs_nothing_here(search_params, tmp_path, monkeypatch):
    """A hostile worker bypasses metahpo's encoding and sends a pickle: refused, and every trial fails."""
    from distributed import LocalCluster

    target = tmp_path / "pwned"
    preload = tmp_path / "hostile_worker.py"
    preload.write_text(PRELOAD.format(target=str(target)))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1", preload=[str(preload)]) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        search_params["search"].update(executor="dask", address=address, n_calls=2, n_initial_points=2)
        with pytest.raises(DivergenceError, match="all 2 trials failed"):
            run(search_params, tmp_path, st.bowl)
    trials = pd.read_csv(tmp_path / "s" / "trials.csv")
    assert not target.exists()
    assert (trials["status"] == "failed").all()
    assert trials["error"].str.startswith("result refused: a Dask worker sent").all()


def test_run_jobs_reruns_every_job_a_broken_pool_lost_and_blames_only_a_job_alone(tmp_path):
    from metahpo.executors import run_jobs

    outcomes = {}

    def done(key, value, exc):
        outcomes[key] = (value, type(exc).__name__ if exc else None)

    started, died = str(tmp_path / "started"), str(tmp_path / "died")
    jobs = {
        "healthy": (st.beside_a_death, started, died, "h"),  # lost with the pool, as it still runs when it breaks
        "dies": (st.die_once_after, started, died, "d"),
        "doomed": (st.always_die,),
    }
    with TrialRunner("local", 2) as runner:
        run_jobs(runner, jobs, 2, 1, done)
    assert outcomes == {"healthy": ("h", None), "dies": ("d", None), "doomed": (None, BrokenProcessPool.__name__)}


def test_a_job_whose_neighbour_finished_before_the_break_is_not_blamed(tmp_path):
    """The neighbour's result is read before the pool breaks: the killer was alone then, but not when it started."""
    from metahpo.executors import run_jobs

    outcomes = {}
    neighbour_done, died = tmp_path / "neighbour_done", str(tmp_path / "died")

    def done(key, value, exc):
        outcomes[key] = (value, type(exc).__name__ if exc else None)
        if key == "neighbour":
            neighbour_done.touch()  # only now does the killer kill its worker

    jobs = {"neighbour": (st.return_value, "n"), "killer": (st.die_once_after, str(neighbour_done), died, "k")}
    with TrialRunner("local", 2) as runner:
        run_jobs(runner, jobs, 2, 0, done)
    assert (tmp_path / "died").exists()
    assert outcomes == {"neighbour": ("n", None), "killer": ("k", None)}


class PoolBrokenAtOneSubmit:
    """A runner whose ``n``-th submit finds its pool broken (a worker died after the caller's last look)."""

    def __init__(self, n: int):
        self.n, self.submits, self.restarts = n, 0, 0

    def submit(self, fn, *args) -> Future:
        self.submits += 1
        if self.submits == self.n:
            raise BrokenProcessPool("A child process terminated abruptly")
        future = Future()
        future.set_result(fn(*args))
        return future

    def restart(self) -> None:
        self.restarts += 1


def test_a_submit_to_a_pool_that_just_broke_replaces_it_and_blames_no_one():
    from metahpo.executors import run_jobs

    outcomes = {}
    runner = PoolBrokenAtOneSubmit(2)
    jobs = {key: (st.return_value, key) for key in "abc"}
    run_jobs(runner, jobs, 2, 0, lambda key, value, exc: outcomes.__setitem__(key, (value, exc)))
    assert outcomes == {"a": ("a", None), "b": ("b", None), "c": ("c", None)}
    assert (runner.submits, runner.restarts) == (4, 1)


def test_collect_stores_checked_results_names_a_twice_lost_worker_and_re_raises_the_rest():
    from metahpo.errors import WorkerError
    from metahpo.executors import collect

    results: dict = {}
    done = collect(results, lambda key, value: (key, value * 2), "scoring")
    done("tuned", 21, None)
    assert results == {"tuned": ("tuned", 42)}
    with pytest.raises(WorkerError, match="the worker scoring default was lost \\(BrokenProcessPool\\) twice"):
        done("default", None, BrokenProcessPool("gone"))
    with pytest.raises(RefusedResult, match="no weights"):
        done("x", None, RefusedResult("no weights"))
    refusing = collect(results, lambda key, value: (_ for _ in ()).throw(RefusedResult(f"bad {key}")), "training")
    with pytest.raises(RefusedResult, match="bad y"):
        refusing("y", 1, None)
    assert list(results) == ["tuned"]


def test_a_name_read_from_a_file_stays_inside_its_folder(tmp_path):
    from metahpo.errors import ArtifactError
    from metahpo.paths import inside

    models, outside = tmp_path / "models", tmp_path / "elsewhere"
    (models / "tuned").mkdir(parents=True)
    outside.mkdir()
    (models / "out").symlink_to(outside, target_is_directory=True)
    (models / "twin").symlink_to(models / "tuned", target_is_directory=True)
    source = tmp_path / "kinds.json"
    assert inside(models, "tuned", source, "k") == models / "tuned"
    assert inside(models, "twin", source, "k") == models / "twin"  # a link that stays inside
    assert inside(models, "best_cnp", source, "k") == models / "best_cnp"  # not there yet: named when read
    for name in (str(outside), "/etc", "..", "../elsewhere", "tuned/../../elsewhere", "a/b", "out", "", ".", 3, None,
                 "a\0b", "..\\x"):  # fmt: skip
        with pytest.raises(ArtifactError, match=r"kinds.json: k: .* is not an entry of"):
            inside(models, name, source, "k")
