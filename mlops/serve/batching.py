"""Adaptive micro-batching: concurrent requests folded into one model call.

One ``Batcher`` per loaded model version, one model thread each. Requests queue on the event
loop; the batcher takes everything queued (up to ``max_batch_rows``) as one batch, builds one
DataFrame and calls ``predict`` once in its thread. While that call runs, new requests queue,
so the next batch forms by itself: at low load a request waits for nobody (batch of one), at
high load batches grow with the load. On top of that the batcher waits at most
``max_wait_ms`` for more rows, but only while more are on their way: requests that have
arrived and are still being read and checked (``arrivals()``), or, when the recent number of
requests in flight (``concurrency()``, a moving average) says callers come together, until that
many are queued. A lone caller (concurrency 1) never pays the wait.

The queue is bounded (``max_queue`` requests): past it ``submit`` raises ``QueueFull`` at once
and the server answers 503 with Retry-After rather than slowing every caller. A request whose
caller stops waiting (a time-out, a closed connection) cancels its future: it leaves the queue at
once and costs no model time.

When a batch of several requests fails, each request is run again alone, so only the request
whose rows make the model raise gets the error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

#: turns merged columns into model input (signature order and dtypes) and calls predict
PredictFn = Callable[[dict[str, list[Any]], int], list[Any]]


class QueueFull(Exception):
    """The batcher's queue is at its bound."""


@dataclass
class _Item:
    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future[list[Any]]


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    requests: int = 0
    rejected: int = 0
    abandoned: int = 0  # requests dropped from the queue because their caller stopped waiting
    max_batch_rows_seen: int = 0


class Batcher:
    def __init__(
        self,
        predict: PredictFn,
        *,
        name: str,
        max_batch_rows: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        arrivals: Callable[[], int] = lambda: 0,
        concurrency: Callable[[], float] = lambda: 1.0,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self.predict = predict
        self.name = name
        self.max_batch_rows = max(1, max_batch_rows)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_queue = max(1, max_queue)
        self.arrivals = arrivals
        self.concurrency = concurrency
        self.stats = BatchStats()
        self._queue: deque[_Item] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}", initializer=initializer)
        self._busy = False
        self._closed = False

    # --- the caller's side ----------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, columns: dict[str, list[Any]], rows: int) -> asyncio.Future[list[Any]]:
        """Queue one request's rows; the future resolves to its predictions (or the model's exception)."""
        if self._closed:
            raise QueueFull("the model is shutting down")
        if len(self._queue) >= self.max_queue:
            self.stats.rejected += 1
            raise QueueFull(f"{len(self._queue)} requests queued for {self.name}")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        item = _Item(columns, rows, future)
        self._queue.append(item)
        future.add_done_callback(lambda f: self._abandoned(item) if f.cancelled() else None)
        assert self._wake is not None
        self._wake.set()
        return future

    def _abandoned(self, item: _Item) -> None:
        """The caller cancelled its future (timed out, or the client went away): free the queue slot at once,
        so the request costs no model time and no room in the bounded queue."""
        try:
            self._queue.remove(item)
        except ValueError:  # already taken into a batch: its result is dropped
            return
        self.stats.abandoned += 1

    async def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the model thread."""
        self._closed = True
        deadline = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(QueueFull("the model shut down"))
        self._queue.clear()
        self._executor.shutdown(wait=False)

    # --- the batcher's side ---------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            if self.max_wait and self._worth_waiting():
                deadline = loop.time() + self.max_wait
                while self._worth_waiting():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
            batch = self._take()
            if not batch:
                continue
            self._busy = True
            try:
                outcomes = await loop.run_in_executor(self._executor, self._predict_batch, batch)
            except BaseException as exc:  # noqa: BLE001 - cancelled while predicting: fail the batch, then stop
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc if isinstance(exc, Exception) else QueueFull("stopped"))
                raise
            finally:
                self._busy = False
            for item, outcome in zip(batch, outcomes, strict=True):
                if item.future.done():  # the caller went away
                    continue
                if isinstance(outcome, BaseException):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)

    def _worth_waiting(self) -> bool:
        """More rows are on their way: requests being read now, or callers that usually come together
        (the recent number of requests in flight) and are not all queued yet."""
        if self._rows_queued() >= self.max_batch_rows:
            return False
        if self.arrivals() > 0:
            return True
        return len(self._queue) < min(self.max_batch_rows, int(self.concurrency() + 0.5))

    def _rows_queued(self) -> int:
        return sum(item.rows for item in self._queue)

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            if batch and rows + item.rows > self.max_batch_rows:
                break
            self._queue.popleft()
            if item.future.done():  # cancelled while queued
                continue
            batch.append(item)
            rows += item.rows
        return batch

    def _predict_batch(self, batch: Sequence[_Item]) -> list[Any]:
        """In the model thread: one call for the whole batch; on failure, each request alone."""
        self.stats.batches += 1
        self.stats.requests += len(batch)
        total = sum(item.rows for item in batch)
        self.stats.rows += total
        self.stats.max_batch_rows_seen = max(self.stats.max_batch_rows_seen, total)
        if len(batch) == 1:
            return [self._call(batch[0].columns, batch[0].rows)]
        merged: dict[str, list[Any]] = {}
        for name in batch[0].columns:
            values: list[Any] = []
            for item in batch:
                part = item.columns.get(name)
                if part is None:  # requests of one batch share their columns; if not, run them alone
                    return [self._call(i.columns, i.rows) for i in batch]
                values.extend(part)
            merged[name] = values
        outcome = self._call(merged, total)
        if isinstance(outcome, BaseException) or len(outcome) != total:
            return [self._call(item.columns, item.rows) for item in batch]
        out = []
        start = 0
        for item in batch:
            out.append(outcome[start : start + item.rows])
            start += item.rows
        return out

    def _call(self, columns: dict[str, list[Any]], rows: int) -> Any:
        try:
            return self.predict(columns, rows)
        except Exception as exc:  # noqa: BLE001 - the model's failure is the request's answer, not the server's
            return exc
