"""run_parallel: every item once, errors and early exits stop the workers, and the adaptive
mode uses the pool when items wait (on a disk, here on a sleep) and keeps to the calling
thread otherwise."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops import parallel
from mlops.parallel import next_way, run_parallel


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("jobs", [1, 4])
def test_every_item_is_run_once_and_its_result_yielded(adaptive: bool, jobs: int) -> None:
    calls: list[int] = []

    def double(n: int) -> int:
        calls.append(n)
        if n % 100 == 0:
            time.sleep(0.001)  # some items wait, so a pool window sees several threads at work
        return 2 * n

    with run_parallel(double, range(3000), jobs=jobs, adaptive=adaptive) as results:
        got = list(results)
    assert sorted(got) == [2 * n for n in range(3000)]
    assert sorted(calls) == list(range(3000))


def test_the_faster_way_takes_over_only_by_a_clear_margin() -> None:
    # the decision itself, from measured rates: which thread ran an item is the machine's
    # business (load, cores), so no test asserts where items ran, only that each ran once
    assert next_way(False, current_rate=100.0, other_rate=400.0) is True  # the pool is clearly faster
    assert next_way(True, current_rate=100.0, other_rate=400.0) is False  # the calling thread is
    assert next_way(False, current_rate=100.0, other_rate=110.0) is False  # within the margin: stay
    assert next_way(True, current_rate=100.0, other_rate=124.0) is True
    assert next_way(False, current_rate=0.0, other_rate=0.0) is True  # nothing measured: try the other way


def test_adaptive_switches_ways_as_the_items_change_and_runs_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # waiting items first, then small-file work, so the measuring rounds end and hand over
    # mid-queue whichever way wins them; rounds are made shorter to keep the test short
    monkeypatch.setattr(parallel, "ADAPT_REPROBE", 0.2)
    ran: list[int] = []
    block = b"x" * 4096

    def work(n: int) -> int:
        ran.append(n)
        if n < 600:
            time.sleep(0.002)
        else:
            for k in range(4):
                path = f"{tmp_path}/{n}-{k}"
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, block)
                os.close(fd)
                os.unlink(path)
        return n

    total = 12000
    with run_parallel(work, range(total), jobs=8, adaptive=True) as results:
        got = list(results)
    assert sorted(got) == list(range(total))  # each result exactly once
    assert sorted(ran) == list(range(total))  # each item run exactly once


def _recording(calls: list[int], fail_at: int | None = None) -> Callable[[int], int]:
    """Work that records each item it starts and waits a little (so a pool takes it)."""

    def work(n: int) -> int:
        calls.append(n)
        time.sleep(0.002)
        if n == fail_at:
            raise ValueError(f"item {n} is bad")
        return n

    return work


@pytest.mark.parametrize("adaptive", [False, True])
def test_an_error_stops_the_workers_before_it_reaches_the_caller(adaptive: bool) -> None:
    calls: list[int] = []
    work = _recording(calls, fail_at=150)

    with pytest.raises(ValueError, match="item 150"):
        with run_parallel(work, range(2000), jobs=4, adaptive=adaptive) as results:
            for _ in results:
                pass
    settled = len(calls)
    time.sleep(0.05)
    assert len(calls) == settled < 2000  # nothing ran after the error came out


@pytest.mark.parametrize("adaptive", [False, True])
def test_leaving_the_block_early_stops_the_workers(adaptive: bool) -> None:
    calls: list[int] = []
    work = _recording(calls)

    with run_parallel(work, range(2000), jobs=4, adaptive=adaptive) as results:
        for n, _ in enumerate(results):
            if n == 300:
                break
    settled = len(calls)
    time.sleep(0.05)
    assert len(calls) == settled < 2000
    assert not [t for t in threading.enumerate() if t.name.startswith("mlops-io-")]


@pytest.mark.parametrize("adaptive", [False, True])
def test_ctrl_c_while_the_pool_runs_still_stops_the_caller_who_left_the_loop(adaptive: bool) -> None:
    # while a pool runs, SIGINT is deferred to a flag; leaving the loop early must not drop it
    def work(n: int) -> int:
        time.sleep(0.002)  # waiting items: the adaptive mode moves them to the pool
        return n

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with run_parallel(work, range(3000), jobs=4, adaptive=adaptive) as results:
            for n, _ in enumerate(results):
                if n == 100:  # the Ctrl-C and the early exit in one step: only the exit can raise it
                    os.kill(os.getpid(), signal.SIGINT)
                    break
    assert signal.getsignal(signal.SIGINT) is before
    assert not [t for t in threading.enumerate() if t.name.startswith("mlops-io-")]
