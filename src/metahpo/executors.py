"""Where trials run: in this process, in a local process pool, or on a Dask cluster.

All three are ``concurrent.futures``-style executors (``submit`` returns a future), so the search
loop does not care which one it drives.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from metahpo.errors import InputError, first_line

CONNECT_SECONDS = 10  # how long to wait for a Dask scheduler before naming search.address


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


@contextlib.contextmanager
def dask_executor(address: str | None, workers: int) -> Iterator[Executor]:
    """A Dask executor on the scheduler at ``address``, or on a LocalCluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            )
            address = cluster.scheduler_address
        try:
            client = stack.enter_context(Client(address, timeout=CONNECT_SECONDS))
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"params.yaml: search.address: no Dask scheduler answered at {address!r} within "
                f"{CONNECT_SECONDS} s ({first_line(exc)})"
            ) from None
        yield client.get_executor()


class TrialRunner:
    """Owns the executor (``local`` or ``dask``, ``workers`` at once) and can replace a broken one."""

    def __init__(self, executor: str = "local", workers: int = 1, address: str | None = None):
        self.kind, self.workers, self.address = executor, workers, address
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

    def _start(self) -> None:
        if self.kind == "dask":
            self.executor = self._stack.enter_context(dask_executor(self.address, self.workers))
        elif self.workers == 1:
            self.executor = InlineExecutor()
        else:
            # spawn, not fork: a forked copy of a process that already started torch threads can deadlock.
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)
            )
            self.executor = self._stack.enter_context(pool)

    def submit(self, fn, *args) -> Future:
        """Schedule ``fn(*args)``, starting the executor first if this is the first job."""
        if self.executor is None:
            self._start()
        return self.executor.submit(fn, *args)

    def restart(self) -> None:
        """Replace a local process pool after a worker died (Dask reschedules on its own)."""
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
