"""A generic dynamic batcher: coalesce concurrent requests into one model step.

Requests from every connection go into one bounded queue. A single worker task takes every job waiting (up to
`max_batch_size` rows) as soon as the model is free. Only when fewer jobs are waiting than the previous step
served does it wait for company: until the batch is that large, or until the *oldest* job of the batch has
waited `max_delay_s` (as Triton's `max_queue_delay`), so jobs that already waited through the previous model
step do not wait twice, and a lone caller never waits. It drops jobs whose caller gave up (cancelled) or
whose deadline passed, and runs `run_batch` on the survivors in a worker thread, so the event loop never
blocks on the model. Results (or the exception) go back to each caller.

Per request it costs one future and a deque append: no asyncio.Queue, no `wait_for` task per job.

Small steps on the loop (`inline_max_s`, off by default; the engine turns it on for CPU models): a step of at
most INLINE_MAX_ROWS rows runs on the event loop itself when recent such steps took less than `inline_max_s`
and every caller waiting on the batcher is in that step (none is still on its way back from the previous
step: a lone caller, not a crowd), and the event loop was mostly idle (under half its time on the CPU) for
at least such a step before it came: a loop kept busy by a crowd of callers, even one whose requests come
one at a time, keeps the model thread, so that requests can arrive while a step runs. A lone caller then pays no hand-off to the model thread and back (two
thread wake-ups, which on a loaded machine can each wait milliseconds for a free core). Under load, steps
stay in the model thread: there requests pile up while a step runs, and the next step takes them all (on the
loop every step would take the one or two requests that came, and cost as much per step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from movierec.server.errors import ErrorCode, RequestError

J = TypeVar("J")
R = TypeVar("R")

log = logging.getLogger(__name__)

INLINE_MAX_ROWS = 4  # steps this small may run on the event loop (see inline_max_s)


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
    inline_steps: int = 0  # steps run on the event loop (inline_max_s)
    batch_sizes: list[int] = field(default_factory=list)  # jobs per batch, last 1000

    def record_batch(self, jobs: int, rows: int) -> None:
        self.batches_run += 1
        self.max_batch_rows = max(self.max_batch_rows, rows)
        self.batch_sizes.append(jobs)
        del self.batch_sizes[:-1000]


class BatchObserver(Protocol):
    """What the batcher reports (Prometheus in `movierec.server.metrics`); called on the event loop, except
    `step`, called in the model thread right after the step."""

    def queued(self, depth: int) -> None: ...

    def dropped(self, reason: str, n: int) -> None: ...  # deadline | cancelled | queue_full

    def step(self, requests: int, rows: int, seconds: float) -> None: ...


class StepTracer(Protocol):
    """Tracing of model steps (`movierec.server.tracing`): `context()` is taken when a job is queued (the
    caller's span), `run(jobs, contexts, fn)` runs the step inside a span linked to those contexts."""

    def context(self) -> Any: ...

    def run(self, n_rows: int, contexts: list[Any], fn: Callable[[], Any]) -> Any: ...


@dataclass(slots=True)
class _Pending(Generic[J, R]):
    job: J
    rows: int
    deadline: float | None  # loop.time() based
    future: asyncio.Future[R]
    queued_at: float  # loop.time() when submitted
    trace: Any = None  # the caller's span context, when tracing is on


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
        observer: BatchObserver | None = None,
        tracer: StepTracer | None = None,
        inline_max_s: float = 0.0,
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
        self._queue: deque[_Pending[J, R]] = deque()
        self._arrival: asyncio.Future[None] | None = None  # set while the worker waits for a job
        self._running = False  # submit() accepts jobs between start() and stop()
        self._worker: asyncio.Task[None] | None = None
        self._last_jobs = 0  # callers served by the previous model step (load signal for _gather)
        self.stats = BatcherStats()
        self.observer = observer
        self.tracer = tracer
        self.inline_max_s = inline_max_s
        self._small_step_cpu: float | None = None  # EWMA of the wall seconds of steps <= INLINE_MAX_ROWS rows
        self._waiting = 0  # callers between submit() and their result (inline steps: only when all are in the step)
        self._idle_before = False  # the loop was mostly idle for at least a small step before this batch came

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker on the running loop."""
        if self._worker is not None:
            return
        self._running = True
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="movierec-batcher")

    async def stop(self) -> None:
        """Stop the worker; jobs still queued fail with UNAVAILABLE."""
        self._running = False
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        leftovers = list(self._queue)
        self._queue.clear()
        for p in leftovers:
            if not p.future.done():
                p.future.set_exception(RequestError(ErrorCode.UNAVAILABLE, "server is shutting down"))
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- callers -----------------------------------------------------------------------------------------
    async def submit(self, job: J, *, deadline: float | None = None) -> R:
        """Queue a job and wait for its result. `deadline` is in `loop.time()` seconds (None = no deadline).

        Raises RequestError(RESOURCE_EXHAUSTED) at once when the queue is full, DEADLINE_EXCEEDED when the
        deadline passed before the job was run. Cancelling the awaiting task drops the job if not yet run.
        """
        if not self._running:
            raise RequestError(ErrorCode.UNAVAILABLE, "server is not serving")
        if len(self._queue) >= self.max_queue_size:
            self.stats.requests_rejected_full += 1
            if self.observer is not None:
                self.observer.dropped("queue_full", 1)
            raise RequestError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"request queue is full ({self.max_queue_size} requests waiting); retry later with backoff",
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        trace = self.tracer.context() if self.tracer is not None else None
        self._queue.append(_Pending(job, self._rows_of(job), deadline, future, loop.time(), trace))
        if self.observer is not None:
            self.observer.queued(len(self._queue))
        arrival = self._arrival
        if arrival is not None and not arrival.done():
            arrival.set_result(None)
        self._waiting += 1
        try:
            return await future
        finally:
            self._waiting -= 1

    # -- worker ----------------------------------------------------------------------------------------
    async def _wait_arrival(self, until: float | None) -> None:
        """Return when a job is queued or (with `until`, in loop time) when that time has come."""
        if self._queue:
            return
        loop = asyncio.get_running_loop()
        arrival = self._arrival = loop.create_future()
        timer = None if until is None else loop.call_at(until, _wake, arrival)
        try:
            await arrival
        finally:
            self._arrival = None
            if timer is not None:
                timer.cancel()

    def _take(self, batch: list[_Pending[J, R]], rows: int) -> int:
        """Move queued jobs into `batch` while they fit in `max_batch_size` rows (a first job always fits)."""
        q = self._queue
        while q and (not batch or rows + q[0].rows <= self.max_batch_size):
            p = q.popleft()
            batch.append(p)
            rows += p.rows
        if self.observer is not None:
            self.observer.queued(len(q))
        return rows

    async def _gather(self) -> list[_Pending[J, R]]:
        loop = asyncio.get_running_loop()
        self._idle_before = False
        if not self._queue and self.inline_max_s > 0:  # how idle the loop was while no job waited
            wall0, cpu0 = time.perf_counter(), time.thread_time()
            await self._wait_arrival(None)
            wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
            step = self._small_step_cpu
            self._idle_before = step is not None and wall >= step and cpu < 0.5 * wall
        else:
            await self._wait_arrival(None)
        batch: list[_Pending[J, R]] = []
        rows = self._take(batch, 0)
        # Wait for company only until the batch is as large as the previous one: callers in a closed loop
        # (each sends its next request when the last is answered) come back, so a batch that already holds as
        # many jobs as the last step will not grow by waiting. A lone caller therefore never waits; under
        # heavy load the batch grows with what queues during each step; when load drops, the window (from
        # the oldest job's arrival) bounds the wait.
        target = max(self._last_jobs, 1)
        until = batch[0].queued_at + self.max_delay_s
        while len(batch) < target and rows < self.max_batch_size and not self._queue and loop.time() < until:
            await self._wait_arrival(until)
            rows = self._take(batch, rows)
        return batch

    def _live(self, batch: list[_Pending[J, R]]) -> list[_Pending[J, R]]:
        now = asyncio.get_running_loop().time()
        live = []
        cancelled = expired = 0
        for p in batch:
            if p.future.done():  # cancelled by its caller
                cancelled += 1
            elif p.deadline is not None and now >= p.deadline:
                expired += 1
                p.future.set_exception(
                    RequestError(ErrorCode.DEADLINE_EXCEEDED, "deadline passed while queued; not scored")
                )
            else:
                live.append(p)
        if cancelled or expired:
            self._count_drops(cancelled, expired)
        return live

    def _count_drops(self, cancelled: int, expired: int) -> None:
        self.stats.requests_dropped_cancelled += cancelled
        self.stats.requests_dropped_expired += expired
        if self.observer is not None:
            if cancelled:
                self.observer.dropped("cancelled", cancelled)
            if expired:
                self.observer.dropped("deadline", expired)

    def _inline(self, batch: list[_Pending[J, R]]) -> bool:
        """Whether a step runs on the event loop: small, such steps were quick lately, no other caller is
        waiting (the callers of the previous step have all taken their results), the loop idled before it."""
        step = self._small_step_cpu
        return (
            self._idle_before
            and self._waiting == len(batch)
            and sum(p.rows for p in batch) <= INLINE_MAX_ROWS
            and step is not None
            and step < self.inline_max_s
        )

    def _step(self, batch: list[_Pending[J, R]]) -> Sequence[R]:
        """One model step (in the model thread, or inline): run_batch (in a span when tracing), then the
        observer; small steps' durations are tracked when inline steps are on."""
        if self.inline_max_s > 0 and sum(p.rows for p in batch) <= INLINE_MAX_ROWS:
            c0 = time.perf_counter()  # wall time (a vDSO read; thread CPU time is a system call): a step slowed
            results = self._step_traced(batch)  # down by a busy machine counts as slow, so it leaves the loop
            cpu = time.perf_counter() - c0
            last = self._small_step_cpu
            self._small_step_cpu = cpu if last is None else 0.8 * last + 0.2 * cpu
            return results
        return self._step_traced(batch)

    def _step_traced(self, batch: list[_Pending[J, R]]) -> Sequence[R]:
        jobs = [p.job for p in batch]
        if self.observer is None and self.tracer is None:
            return self._run_batch(jobs)
        t0 = time.perf_counter()
        if self.tracer is not None:
            rows = sum(p.rows for p in batch)
            results = self.tracer.run(rows, [p.trace for p in batch], lambda: self._run_batch(jobs))
        else:
            results = self._run_batch(jobs)
        if self.observer is not None:
            self.observer.step(len(batch), sum(p.rows for p in batch), time.perf_counter() - t0)
        return results

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._live(await self._gather())
            if not batch:
                continue
            try:
                if self.inline_max_s > 0 and self._inline(batch):
                    self.stats.inline_steps += 1
                    results = self._step(batch)
                else:
                    results = await loop.run_in_executor(self._executor, self._step, batch)
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
                if p.future.done():
                    self._count_drops(1, 0)
                else:
                    p.future.set_result(r)
                    self.stats.requests_served += 1
                    self.stats.rows_served += p.rows


def _wake(arrival: asyncio.Future[None]) -> None:
    if not arrival.done():
        arrival.set_result(None)
