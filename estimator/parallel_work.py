"""Independent jobs (captures, figures) in worker processes, with one-line errors.

`worker_pool(workers)` is a concurrent.futures Executor: with one worker it runs each job in
this process when `finished` reaches it (no processes, the order of a plain loop); with more a
ProcessPoolExecutor whose workers are forked up front, before the caller starts any thread (a
progress bar's), since a fork copies only the calling thread and a lock another thread held
would stay locked in the child. Workers ignore Ctrl-C: this process gets it, stops them and
reports it once. Jobs and their results must pickle: module-level functions, plain data (a
CapturedStep does not pickle; capture and cost inside the job and return its numbers).
`finished(futures)` yields each future as its job ends; a job's RooflineError reaches the caller as
itself (the CLI prints one line, no worker traceback), a worker that died as a RooflineError.

Example:
    >>> with worker_pool(usable_cores()) as pool:
    ...     for future in finished([pool.submit(zoo_summary, name) for name in names]):
    ...         print(future.result()["forward_flops"])
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import chain

from .errors import RooflineError


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class InlineExecutor(Executor):
    """An Executor that runs each job in this process when `finished` (or its result) reaches it:
    in the order submitted, as a plain loop would, with the progress advancing between jobs."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return _Deferred(fn, args, kwargs)


class _Deferred(Future):
    """A job of an InlineExecutor: run on the first call of `result`."""

    def __init__(self, fn, args: tuple, kwargs: dict):
        super().__init__()
        self._job = (fn, args, kwargs)

    def result(self, timeout=None):
        if self._job is not None:
            fn, args, kwargs = self._job
            self._job = None
            try:
                self.set_result(fn(*args, **kwargs))
            except Exception as e:  # raised below, as a pool's future would
                self.set_exception(e)
        return super().result(timeout)


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def worker_pool(workers: int) -> Iterator[Executor]:
    """An Executor of `workers` processes (module doc); 1 or less: jobs run in this process."""
    if workers <= 1:
        yield InlineExecutor()
        return
    before = set(multiprocessing.active_children())
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_interrupt)
    pool.submit(int).result()  # starts the workers now (module doc: before any thread)
    processes = set(multiprocessing.active_children()) - before
    try:
        yield pool
    except BaseException:
        for process in processes:  # stop jobs under way at once (Ctrl-C, an error elsewhere)
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def finished(futures: Iterable[Future]) -> Iterator[Future]:
    """Each of `futures` as its job ends (an InlineExecutor's run here, in order); a job's
    exception is raised here, a worker that died becomes a RooflineError."""
    futures = list(futures)
    here = [f for f in futures if isinstance(f, _Deferred) or f.done()]
    try:
        for future in chain(here, as_completed(set(futures) - set(here))):
            future.result()
            yield future
    except BrokenProcessPool:
        raise RooflineError("a worker process died (out of memory?); where the command takes --jobs, run it again "
                            "with --jobs 1 to work in one process") from None
