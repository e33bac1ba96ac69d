"""run_parallel: every item once, errors and early exits stop the workers, and the adaptive
mode uses the pool when items wait (on a disk, here on a sleep) and keeps to the calling
thread otherwise."""

from __future__ import annotations

import threading
import time

import pytest

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


def test_adaptive_keeps_to_the_calling_thread_for_work_that_holds_the_gil() -> None:
    ran_on: list[str] = []

    def spin(n: int) -> int:
        ran_on.append(threading.current_thread().name)
        total = 0
        for k in range(2000):  # pure Python: threads only take turns on the GIL
            total += k * n
        return total

    with run_parallel(spin, range(20000), jobs=8, adaptive=True) as results:
        assert len(list(results)) == 20000
    on_caller = ran_on.count(threading.current_thread().name)
    # the pool runs a short window every round (~0.05 s of each ~1.1 s), and it can win a
    # round on a noisy machine, but then the next round takes the work back
    assert on_caller > len(ran_on) / 2, f"{on_caller} of {len(ran_on)} items ran on the calling thread"


@pytest.mark.parametrize("adaptive", [False, True])
def test_an_error_stops_the_workers_before_it_reaches_the_caller(adaptive: bool) -> None:
    calls: list[int] = []

    def work(n: int) -> int:
        calls.append(n)
        time.sleep(0.002)
        if n == 150:
            raise ValueError("item 150 is bad")
        return n

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

    def work(n: int) -> int:
        calls.append(n)
        time.sleep(0.002)
        return n

    with run_parallel(work, range(2000), jobs=4, adaptive=adaptive) as results:
        for n, _ in enumerate(results):
            if n == 300:
                break
    settled = len(calls)
    time.sleep(0.05)
    assert len(calls) == settled < 2000
    assert not [t for t in threading.enumerate() if t.name.startswith("mlops-io-")]
