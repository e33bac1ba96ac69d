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
from mlops.parallel import run_parallel


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


def test_adaptive_uses_the_pool_when_items_wait() -> None:
    ran_on: list[str] = []

    def wait(n: int) -> int:
        ran_on.append(threading.current_thread().name)
        time.sleep(0.003)  # releases the GIL, like a read from a cold disk
        return n

    with run_parallel(wait, range(400), jobs=8, adaptive=True) as results:
        assert sorted(results) == list(range(400))
    on_workers = sum(1 for name in ran_on if name.startswith("mlops-io-"))
    # the calling thread runs one measuring window (~0.05 s, ~15 items); eight sleeping
    # threads finish items far faster than one, so the pool takes the rest
    assert on_workers > len(ran_on) / 2, f"{on_workers} of {len(ran_on)} items ran on worker threads"


def test_adaptive_switches_ways_as_the_items_change_and_runs_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # waiting items first (the pool wins), then small-file work (the calling thread wins:
    # threads there only take turns on the GIL and on the folder), so each way's windows
    # end and hand over mid-queue; rounds are made shorter to keep the test short
    monkeypatch.setattr(parallel, "ADAPT_REPROBE", 0.2)
    ran_on: dict[int, str] = {}
    block = b"x" * 4096

    def work(n: int) -> int:
        ran_on[n] = threading.current_thread().name
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
    assert sorted(got) == list(range(total))  # each exactly once
    assert len(ran_on) == total
    caller = threading.current_thread().name
    assert sum(1 for n in range(600) if ran_on[n] != caller) > 300, "the waiting items should mostly run on the pool"
    took_back = sum(1 for n in range(600, total) if ran_on[n] == caller)
    # how many depends on the machine's load (eight threads get more of a busy CPU than one)
    assert took_back > 0, "the calling thread should take the small-file items back in some round"


def test_adaptive_keeps_to_the_calling_thread_for_work_that_holds_the_gil() -> None:
    ran_on: list[str] = []

    def spin(n: int) -> int:
        ran_on.append(threading.current_thread().name)
        total = 0
        for k in range(2000):  # pure Python: threads only take turns on the GIL
            total += k * n
        return total

    expected = [spin(n) for n in range(20000)]
    ran_on.clear()  # computing what to expect ran on this thread too
    with run_parallel(spin, range(20000), jobs=8, adaptive=True) as results:
        assert sorted(results) == expected
    on_caller = ran_on.count(threading.current_thread().name)
    # the pool runs a short window every round (~0.05 s of each ~1.1 s), and it can win a
    # round on a noisy machine, but then the next round takes the work back
    assert on_caller > len(ran_on) / 2, f"{on_caller} of {len(ran_on)} items ran on the calling thread"


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
