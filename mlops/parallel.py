"""Run I/O-bound work on a thread pool, stopping promptly on the first error or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Worker threads for file and network I/O: they wait on the disk or the wire more than the CPU."""
    return min(32, (os.cpu_count() or 1) * 4)


@contextlib.contextmanager
def run_parallel(fn: Callable[[T], R], items: Iterable[T], *, jobs: int | None = None) -> Iterator[Iterator[R]]:
    """``with run_parallel(fn, items) as results:`` yields ``fn(item)`` in completion order.

    Leaving the block for any reason (the first exception from a worker, Ctrl-C in the
    loop body) cancels what has not started and waits for what is running, *before*
    the exception goes on: a caller's cleanup never races a worker still writing.
    With one job or one item, runs inline.
    """
    work = list(items)
    workers = max(1, min(jobs or default_jobs(), len(work)))
    if workers == 1:
        yield (fn(item) for item in work)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    futures: set[Future[R]] = set()

    def results() -> Iterator[R]:
        pending = futures
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()

    try:
        futures.update(pool.submit(fn, item) for item in work)
        yield results()
    finally:
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
