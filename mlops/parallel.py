"""Run I/O-bound work on a thread pool, stopping promptly on the first error or Ctrl-C."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Worker threads for file and network I/O: they wait on the disk or the wire more than the CPU."""
    return min(32, (os.cpu_count() or 1) * 4)


def run_parallel(fn: Callable[[T], R], items: Iterable[T], *, jobs: int | None = None) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order.

    The first exception (Ctrl-C included) cancels what has not started, waits for what
    is running, and is raised. With one job or one item, runs inline.
    """
    work = list(items)
    workers = max(1, min(jobs or default_jobs(), len(work)))
    if workers == 1:
        for item in work:
            yield fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    futures: set[Future[R]] = set()
    try:
        futures = {pool.submit(fn, item) for item in work}
        pending = futures
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                yield future.result()
    finally:
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
