"""Where trials run: in this process, in a local process pool, or on a Dask cluster.

All three are ``concurrent.futures``-style executors (``submit`` returns a future), so the search
loop does not care which one it drives.

What a job hands back crosses to this process as plain data only: the worker turns its value into
bytes (:func:`call_plain`, ``torch.save``) and this process reads them with ``weights_only=True``,
which rebuilds dicts, lists, numbers, strings and tensors and refuses anything else, so an object
whose unpickling would run code is refused instead of run (:class:`RefusedResult`). The Dask client
also refuses results that arrive pickled (``deserializers=["msgpack"]``). Dask's own messages
(task errors, the scheduler's replies) are still pickles, so every scheduler and worker of a cluster
must be trusted: see docs/search.md, "Trust".
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch

from metahpo import errors
from metahpo.errors import InputError, WorkerError, first_line

CONNECT_SECONDS = 10  # how long to wait for a Dask scheduler before naming search.address


class RefusedResult(WorkerError):
    """A worker handed back something other than the plain data a job returns (refused, never unpickled)."""


class JobError(WorkerError):
    """A job raised in its worker; the message is the first line of the worker's exception."""


# A job's exception of one of these types is raised again as the same type (the stages know them).
KNOWN_ERRORS = {
    cls.__name__: cls
    for cls in (errors.InputError, errors.ConfigError, errors.TaskDataError, errors.ArtifactError,
                errors.DivergenceError, errors.OutputError)
}  # fmt: skip


def call_plain(fn: Callable, *args) -> bytes:
    """In the worker: ``fn(*args)`` as bytes (``{"value": ...}``, or ``{"error": [type name, first line]}``).

    Never raises, so nothing but bytes comes back: an exception object would be unpickled by the
    executor in the caller's process.
    """
    try:
        record = {"value": fn(*args)}
    except Exception as exc:  # noqa: BLE001 - handed back as one line of text
        record = {"error": [type(exc).__name__, first_line(exc)]}
    buffer = io.BytesIO()
    try:
        torch.save(record, buffer)
    except Exception as exc:  # noqa: BLE001 - a value that cannot even be saved is refused in the caller
        buffer = io.BytesIO()
        torch.save({"error": ["RefusedResult", f"result not saveable ({type(exc).__name__})"]}, buffer)
    return buffer.getvalue()


def read_plain(blob) -> object:
    """In this process: the value a :func:`call_plain` job returned, read without running any code.

    Raises :class:`RefusedResult` for anything but bytes of dicts, lists, numbers, strings and tensors,
    and :class:`JobError` for the job's own exception.
    """
    if not isinstance(blob, bytes):
        raise RefusedResult(f"result refused: expected bytes from the worker, got {type(blob).__name__}")
    try:
        record = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refuses every global it does not know
        raise RefusedResult(f"result refused: not plain data ({first_line(exc)[:200]})") from None
    if not isinstance(record, dict) or len(record) != 1 or not {"value", "error"} & set(record):
        raise RefusedResult("result refused: expected {value} or {error} from the worker")
    if "error" in record:
        error = record["error"]
        if not (isinstance(error, list) and len(error) == 2 and all(isinstance(e, str) for e in error)):
            raise RefusedResult("result refused: expected [type, message] as a job's error")
        kind, message = error[0], (error[1].splitlines() or [""])[0]
        if kind in KNOWN_ERRORS:
            raise KNOWN_ERRORS[kind](message)
        raise JobError(f"{kind}: {message}")
    return record["value"]


def _chain(source, decode: Callable) -> Future:
    """A future of ``decode(source.result())``, failing with ``source``'s exception or ``decode``'s."""
    target: Future = Future()

    def settle(done) -> None:
        try:
            value = decode(done.result())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            target.set_exception(exc)
        else:
            target.set_result(value)

    source.add_done_callback(settle)
    return target


class DaskExecutor(Executor):
    """Jobs on a Dask client; a result that arrives pickled is refused (:class:`RefusedResult`), never unpickled."""

    def __init__(self, client):
        self.client = client

    def submit(self, fn, /, *args, **kwargs) -> Future:
        source, target = self.client.submit(fn, *args, pure=False, **kwargs), Future()

        def settle(done) -> None:
            try:
                target.set_result(done.result())
            except TypeError as exc:  # the client's deserializers refused what a worker sent
                target.set_exception(RefusedResult(f"result refused: a Dask worker sent {first_line(exc)}"))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                target.set_exception(exc)

        source.add_done_callback(settle)
        target.dask_future = source  # held while the caller waits: Dask cancels a task whose future is dropped
        return target


def exit_with_parent(parent: int, every: float = 0.5) -> None:
    """In a pool worker: exit as soon as ``parent`` is gone (killed with -9, the pool cannot tell its workers)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class InlineExecutor(Executor):
    """Runs each call at ``submit`` time in this process (``search.workers: 1``)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future


def security(tls: dict | None):
    """``distributed.security.Security`` for ``search.tls`` (``{ca_file, cert, key}``), or None without TLS.

    Encryption is required both ways: this client shows ``cert`` and trusts only servers whose
    certificates ``ca_file`` signed.
    """
    if tls is None:
        return None
    from distributed.security import Security

    try:
        return Security(
            tls_ca_file=tls["ca_file"], tls_client_cert=tls["cert"], tls_client_key=tls["key"],
            tls_scheduler_cert=tls["cert"], tls_scheduler_key=tls["key"],
            tls_worker_cert=tls["cert"], tls_worker_key=tls["key"], require_encryption=True,
        )  # fmt: skip
    except (OSError, ValueError) as exc:
        raise InputError(f"params.yaml: search.tls: {first_line(exc)}") from None


@contextlib.contextmanager
def dask_executor(address: str | None, workers: int, tls: dict | None = None) -> Iterator[Executor]:
    """A Dask executor on the scheduler at ``address``, or on a LocalCluster of ``workers`` processes.

    A LocalCluster listens on 127.0.0.1 only; with ``tls`` (see :func:`security`) it speaks TLS too.
    """
    from distributed import Client, LocalCluster

    secure = security(tls)
    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                    protocol="tls://" if secure else "tcp://",
                    security=secure,
                )  # fmt: skip
            )
            address = cluster.scheduler_address
        try:
            client = stack.enter_context(
                Client(address, timeout=CONNECT_SECONDS, security=secure, deserializers=["msgpack"])
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"params.yaml: search.address: no Dask scheduler answered at {address!r} within "
                f"{CONNECT_SECONDS} s ({first_line(exc)})"
            ) from None
        yield DaskExecutor(client)


class TrialRunner:
    """Owns the executor (``local`` or ``dask``, ``workers`` at once) and can replace a broken one."""

    def __init__(self, executor: str = "local", workers: int = 1, address: str | None = None, tls: dict | None = None):
        self.kind, self.workers, self.address, self.tls = executor, workers, address, tls
        self._stack = contextlib.ExitStack()
        self.executor: Executor | None = None

    def __enter__(self) -> TrialRunner:
        return self  # the executor starts with the first job: a search that only replays its log needs none

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and isinstance(self.executor, ProcessPoolExecutor):
            # Interrupted: stop running trials now instead of waiting for them (no public API for that).
            processes = list((self.executor._processes or {}).values())
            self.executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
        self._stack.close()

    def start(self) -> None:
        """Start the executor now, if it has not started. A Dask client is closed in the thread that opened it,
        so a caller that submits from other threads starts it here first."""
        if self.executor is None:
            self._start()

    def _start(self) -> None:
        if self.kind == "dask":
            self.executor = self._stack.enter_context(dask_executor(self.address, self.workers, self.tls))
        elif self.workers == 1:
            self.executor = InlineExecutor()
        else:
            # spawn, not fork: a forked copy of a process that already started torch threads can deadlock.
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)
            )
            # Start every worker before the first job. A worker the pool spawns at a later submit can be
            # left out of the processes its manager thread is already watching, and its death then goes
            # unnoticed until another job returns (a neighbour's trial finishes on a pool already broken).
            launch = getattr(pool, "_launch_processes", None)  # CPython's own, private: no public API does it
            if launch is not None:
                launch()
            self.executor = self._stack.enter_context(pool)

    def submit(self, fn, *args) -> Future:
        """Schedule ``fn(*args)``, starting the executor first if this is the first job.

        The future's result is ``fn``'s value read back as plain data (:func:`read_plain`), or it fails
        with :class:`RefusedResult`, :class:`JobError` (``fn`` raised) or the executor's own error.
        """
        if self.executor is None:
            self._start()
        return _chain(self.executor.submit(call_plain, fn, *args), read_plain)

    def restart(self) -> None:
        """Replace a local process pool after a worker died (Dask reschedules on its own).

        Returns once the old pool is shut down, so each of its futures is settled: it has a result,
        or the pool's BrokenProcessPool.
        """
        if isinstance(self.executor, ProcessPoolExecutor):
            self._stack.close()
            self._stack = contextlib.ExitStack()
            self._start()


def is_lost_worker(exc: BaseException) -> bool:
    """Whether a trial's exception means its worker died (retry it), not that the trial failed."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        return True
    try:
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover - distributed is a dependency
        return False
    return isinstance(exc, KilledWorker | FutureCancelledError)


def collect(results: dict, check: Callable[[Hashable, object], object], verb: str):
    """A :func:`run_jobs` ``done`` callback that stores ``results[key] = check(key, value)``.

    A job lost twice (its worker died, running alone) raises :class:`WorkerError` naming the job with ``verb``
    ("the worker training tuned was lost"); any other failure is re-raised as it was.
    """

    def done(key: Hashable, value, exc: BaseException | None) -> None:
        if exc is None:
            results[key] = check(key, value)
        elif is_lost_worker(exc):
            raise WorkerError(f"the worker {verb} {key} was lost ({type(exc).__name__}) twice, running alone")
        else:
            raise exc

    return done


def run_jobs(
    runner: TrialRunner,
    jobs: dict[Hashable, tuple],
    limit: int,
    retries: int,
    done: Callable[[Hashable, object, BaseException | None], None],
) -> None:
    """Run every ``jobs[key] = (fn, *args)`` on ``runner``, at most ``limit`` at once, in key order.

    ``done(key, value, None)`` is called as each job finishes, or ``done(key, None, exc)`` once it failed
    for good. A broken local pool is replaced; a job that finished before the break keeps its result,
    and every other job the pool held is lost and runs again. A lost job is blamed (counted against
    ``retries``, as a job of a Dask worker that died is) only if it ran alone: no other job was in
    flight at any time between its submission and the break. Any other lost job reruns alone, uncounted,
    so that the next break names its cause.
    """
    if jobs and limit < 1:
        raise ValueError(f"run_jobs: limit must be at least 1, got {limit}")
    waiting = deque(jobs)
    running: dict[Future, Hashable] = {}
    alone: dict[Future, bool] = {}  # whether no other job has been in flight since this one was submitted
    attempts: dict[Hashable, int] = dict.fromkeys(jobs, 0)
    suspects: set = set()  # jobs lost beside others, or that broke a pool alone: each runs alone from now on
    order = {key: i for i, key in enumerate(jobs)}
    while waiting or running:
        broken = False
        while waiting and len(running) < limit:
            if running and (waiting[0] in suspects or any(key in suspects for key in running.values())):
                break  # a suspect runs alone
            try:
                future = runner.submit(*jobs[waiting[0]])
            except BrokenProcessPool:  # the pool broke after the last wait: its futures fail (or failed) with it
                broken = True
                break
            for other in running:
                alone[other] = False
            alone[future] = not running
            running[future] = waiting.popleft()
        if not broken:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = any(isinstance(f.exception(), BrokenProcessPool) for f in finished)
        if broken:
            # Replacing the pool joins the broken one's manager thread, which settles every future the pool
            # held before it exits: from here on each has its result (finished before the break) or the break.
            runner.restart()
            finished, _ = wait(running)
        again = []
        for future in sorted(finished, key=lambda f: order[running[f]]):
            key, solo = running.pop(future), alone.pop(future)
            exc = future.exception()
            if exc is None:
                suspects.discard(key)
                done(key, future.result(), None)
                continue
            if isinstance(exc, BrokenProcessPool):
                suspects.add(key)
                if not solo:
                    again.append(key)  # lost beside others: not its fault until it breaks a pool alone
                    continue
            if is_lost_worker(exc) and attempts[key] < retries:
                attempts[key] += 1
                again.append(key)
                continue
            suspects.discard(key)
            done(key, None, exc)
        waiting.extendleft(reversed(again))
