"""Run I/O-bound work on a thread pool, stopping promptly on the first error or Ctrl-C.

Ctrl-C and thread pools: Python raises KeyboardInterrupt wherever the main thread happens
to be, including inside concurrent.futures between acquiring a future's lock and the
code that releases it. Workers then block on that lock forever and the process hangs.
So while a pool runs, SIGINT only sets a flag (``sigint_deferred``), and the main thread
turns it into KeyboardInterrupt at a safe point: between short waits.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")
R = TypeVar("R")
POLL = 0.05  # seconds between checks for Ctrl-C while waiting on workers


def default_jobs() -> int:
    """Worker threads for file and network I/O: they wait on the disk or the wire more than the CPU."""
    return min(32, (os.cpu_count() or 1) * 4)


@contextlib.contextmanager
def sigint_deferred(*, raise_on_exit: bool = True) -> Iterator[Callable[[], bool]]:
    """Within the block SIGINT only records itself; yields a check that says whether it came.

    If it came and the block ended without an error, KeyboardInterrupt is raised on exit
    (unless ``raise_on_exit`` is False: the caller handled it already).
    Outside the main thread, or where SIGINT is ignored, this changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield lambda: False
        return
    arrived = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: arrived.set())
    try:
        yield arrived.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
    if arrived.is_set() and raise_on_exit:
        raise KeyboardInterrupt


def wait_any(futures: Iterable[Future[R]], interrupted: Callable[[], bool]) -> tuple[set[Future[R]], set[Future[R]]]:
    """Wait until at least one future is done, raising KeyboardInterrupt if Ctrl-C came."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pending = set(futures)
    while True:
        done, pending = wait(pending, timeout=POLL, return_when=FIRST_COMPLETED)
        if interrupted():
            raise KeyboardInterrupt
        if done:
            return done, pending


@contextlib.contextmanager
def run_parallel(fn: Callable[[T], R], items: Iterable[T], *, jobs: int | None = None) -> Iterator[Iterator[R]]:
    """``with run_parallel(fn, items) as results:`` yields ``fn(item)`` in completion order.

    Leaving the block for any reason (the first exception from a worker, Ctrl-C) cancels
    what has not started and waits for what is running, *before* the exception goes on:
    a caller's cleanup never races a worker still writing. With one job or one item,
    runs inline.
    """
    work = list(items)
    workers = max(1, min(jobs or default_jobs(), len(work)))
    if workers == 1:
        yield (fn(item) for item in work)
        return
    from concurrent.futures import ThreadPoolExecutor  # start-up stays light: only work pays for it

    with sigint_deferred() as interrupted:
        pool = ThreadPoolExecutor(max_workers=workers)
        futures: set[Future[R]] = set()
        # completed futures arrive on a queue: O(1) per item (concurrent.futures.wait costs
        # O(pending) per call, which made 2,000 small items quadratic)
        finished: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()

        def results() -> Iterator[R]:
            for _ in range(len(work)):
                while True:
                    try:
                        future = finished.get(timeout=POLL)
                        break
                    except queue.Empty:
                        if interrupted():
                            raise KeyboardInterrupt from None
                if interrupted():
                    raise KeyboardInterrupt
                yield future.result()

        try:
            for item in work:
                future = pool.submit(fn, item)
                futures.add(future)
                future.add_done_callback(finished.put)
            yield results()
        finally:
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True)
