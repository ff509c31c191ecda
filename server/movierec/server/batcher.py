"""A generic dynamic batcher: coalesce concurrent requests into one model step.

Requests from every connection go into one bounded asyncio queue. A single worker task takes the first
waiting job, then (unless the server is lightly loaded: the previous step served one caller and nobody is
waiting, when it runs at once) more until `max_batch_size` rows are gathered or `max_delay_s` has passed, drops jobs whose
caller gave up (cancelled) or whose deadline passed, and runs `run_batch` on the survivors in a worker
thread, so the event loop never blocks on the model. Results (or the exception) go back to each caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from movierec.server.errors import ErrorCode, RequestError

J = TypeVar("J")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class BatcherStats:
    """Counters for tests, benchmarks and (later) metrics. Updated on the event loop thread only."""

    batches_run: int = 0  # model steps (calls of run_batch)
    requests_served: int = 0  # jobs whose result was delivered
    rows_served: int = 0
    requests_dropped_expired: int = 0  # deadline passed while queued: skipped, never scored
    requests_dropped_cancelled: int = 0  # caller went away while queued: skipped
    requests_rejected_full: int = 0  # queue full: RESOURCE_EXHAUSTED at once
    max_batch_rows: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # jobs per batch, last 1000

    def record_batch(self, jobs: int, rows: int) -> None:
        self.batches_run += 1
        self.max_batch_rows = max(self.max_batch_rows, rows)
        self.batch_sizes.append(jobs)
        del self.batch_sizes[:-1000]


@dataclass
class _Pending(Generic[J, R]):
    job: J
    rows: int
    deadline: float | None  # loop.time() based
    future: asyncio.Future[R]


class DynamicBatcher(Generic[J, R]):
    """Batch jobs of type J into `run_batch(list[J]) -> list[R]` calls (same length and order)."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[J]], Sequence[R]],
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue_size: int,
        rows_of: Callable[[J], int] = lambda _job: 1,
        executor: Executor | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size and max_queue_size must be >= 1, max_delay_s >= 0")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue_size = max_queue_size
        self._rows_of = rows_of
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="movierec-model")
        self._queue: asyncio.Queue[_Pending[J, R]] | None = None
        self._carry: _Pending[J, R] | None = None
        self._last_jobs = 0  # callers served by the previous model step (load signal for _gather)
        self._worker: asyncio.Task[None] | None = None
        self.stats = BatcherStats()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker on the running loop."""
        if self._worker is not None:
            return
        self._queue = asyncio.Queue(maxsize=self.max_queue_size)
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="movierec-batcher")

    async def stop(self) -> None:
        """Stop the worker; jobs still queued fail with UNAVAILABLE."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        leftovers = [self._carry] if self._carry else []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for p in leftovers:
            if not p.future.done():
                p.future.set_exception(RequestError(ErrorCode.UNAVAILABLE, "server is shutting down"))
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + (1 if self._carry else 0)

    # -- callers -----------------------------------------------------------------------------------------
    async def submit(self, job: J, *, deadline: float | None = None) -> R:
        """Queue a job and wait for its result. `deadline` is in `loop.time()` seconds (None = no deadline).

        Raises RequestError(RESOURCE_EXHAUSTED) at once when the queue is full, DEADLINE_EXCEEDED when the
        deadline passed before the job was run. Cancelling the awaiting task drops the job if not yet run.
        """
        if self._queue is None or self._worker is None:
            raise RequestError(ErrorCode.UNAVAILABLE, "server is not serving")
        loop = asyncio.get_running_loop()
        pending: _Pending[J, R] = _Pending(job, self._rows_of(job), deadline, loop.create_future())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.stats.requests_rejected_full += 1
            raise RequestError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"request queue is full ({self.max_queue_size} requests waiting); retry later with backoff",
            ) from None
        return await pending.future

    # -- worker ------------------------------------------------------------------------------------------
    async def _next(self, timeout: float | None) -> _Pending[J, R] | None:
        assert self._queue is not None
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout is not None and timeout <= 0:
                return None
        if timeout is None:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _gather(self) -> list[_Pending[J, R]]:
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        assert first is not None
        batch, rows = [first], first.rows
        if self._last_jobs <= 1 and self._carry is None and self._queue is not None and self._queue.empty():
            # Light load (the last step served a single caller and nobody else is waiting): waiting for
            # company would only add latency, so run now. Under load, batches fill within max_delay_s.
            return batch
        until = loop.time() + self.max_delay_s
        while rows < self.max_batch_size:
            item = await self._next(until - loop.time())
            if item is None:
                break
            if rows + item.rows > self.max_batch_size:
                self._carry = item  # first of the next batch
                break
            batch.append(item)
            rows += item.rows
        return batch

    def _live(self, batch: list[_Pending[J, R]]) -> list[_Pending[J, R]]:
        now = asyncio.get_running_loop().time()
        live = []
        for p in batch:
            if p.future.done():  # cancelled by its caller
                self.stats.requests_dropped_cancelled += 1
            elif p.deadline is not None and now >= p.deadline:
                self.stats.requests_dropped_expired += 1
                p.future.set_exception(
                    RequestError(ErrorCode.DEADLINE_EXCEEDED, "deadline passed while queued; not scored")
                )
            else:
                live.append(p)
        return live

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._live(await self._gather())
            if not batch:
                continue
            jobs = [p.job for p in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, jobs)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(RequestError(ErrorCode.UNAVAILABLE, "server is shutting down"))
                raise
            except Exception as exc:  # the whole step failed: every caller learns why
                log.exception("model step failed for a batch of %d requests", len(batch))
                err = (
                    exc
                    if isinstance(exc, RequestError)
                    else RequestError(ErrorCode.INTERNAL, f"scoring failed: {exc}")
                )
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            self._last_jobs = len(batch)
            self.stats.record_batch(len(batch), sum(p.rows for p in batch))
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)
                    self.stats.requests_served += 1
                    self.stats.rows_served += p.rows
                else:
                    self.stats.requests_dropped_cancelled += 1
