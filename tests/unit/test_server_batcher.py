"""DynamicBatcher on its own (no torch, no grpc): coalescing, size cap, deadlines, cancellation, queue bound."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from movierec.server.batcher import DynamicBatcher
from movierec.server.errors import ErrorCode, RequestError


def make(
    delay_s: float = 0.0, step_s: float = 0.0, **kw: int | float
) -> tuple[DynamicBatcher[int, int], list[list[int]]]:
    seen: list[list[int]] = []

    def run(jobs: Sequence[int]) -> list[int]:
        time.sleep(step_s)
        seen.append(list(jobs))
        return [j * 10 for j in jobs]

    opts: dict = {"max_batch_size": 8, "max_delay_s": delay_s, "max_queue_size": 100, **kw}
    return DynamicBatcher(run, **opts), seen


def test_concurrent_jobs_share_a_step_and_results_go_back_in_order() -> None:
    async def main() -> None:
        b, seen = make(delay_s=0.05)
        b.start()
        out = await asyncio.gather(*(b.submit(i) for i in range(20)))
        assert out == [i * 10 for i in range(20)]
        assert b.stats.batches_run == len(seen) == 3  # 8 + 8 + 4
        assert max(len(s) for s in seen) == 8
        assert b.stats.requests_served == 20
        await b.stop()

    asyncio.run(main())


def test_row_cap_counts_rows_and_big_jobs_run_alone() -> None:
    async def main() -> None:
        seen: list[list[int]] = []

        def run(jobs: Sequence[int]) -> list[int]:
            seen.append(list(jobs))
            return list(jobs)

        b: DynamicBatcher[int, int] = DynamicBatcher(
            run, max_batch_size=10, max_delay_s=0.05, max_queue_size=10, rows_of=lambda j: j
        )
        b.start()
        await asyncio.gather(b.submit(4), b.submit(5), b.submit(30), b.submit(2))
        assert seen == [[4, 5], [30], [2]]
        assert b.stats.max_batch_rows == 30
        await b.stop()

    asyncio.run(main())


def test_expired_and_cancelled_jobs_are_dropped_before_running() -> None:
    async def main() -> None:
        running, release = threading.Event(), threading.Event()
        seen: list[list[int]] = []

        def run(jobs: Sequence[int]) -> list[int]:  # job 1's step lasts until the test releases it
            running.set()
            release.wait(60)
            seen.append(list(jobs))
            return [j * 10 for j in jobs]

        b: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch_size=8, max_delay_s=0.0, max_queue_size=100)
        b.start()
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(b.submit(1))
        assert await asyncio.to_thread(running.wait, 60), "job 1 never ran"
        deadline = loop.time() + 0.05
        expired = asyncio.ensure_future(b.submit(2, deadline=deadline))
        cancelled = asyncio.ensure_future(b.submit(3))
        give_up = loop.time() + 60
        while loop.time() <= deadline or b.queued != 2:  # job 2's deadline passes while job 1 runs
            assert loop.time() < give_up, f"jobs 2 and 3 not queued: {b.queued}"
            await asyncio.sleep(0.01)
        cancelled.cancel()
        kept = asyncio.ensure_future(b.submit(4))
        await asyncio.sleep(0)  # job 4 queued
        release.set()
        assert await first == 10 and await kept == 40
        with pytest.raises(RequestError) as exc:
            await expired
        assert exc.value.code == ErrorCode.DEADLINE_EXCEEDED
        assert [j for s in seen for j in s] == [1, 4]
        assert b.stats.requests_dropped_expired == 1
        assert b.stats.requests_dropped_cancelled == 1
        await b.stop()

    asyncio.run(main())


def test_full_queue_is_refused_at_once() -> None:
    async def main() -> None:
        b, _ = make(step_s=0.2, max_queue_size=2, max_batch_size=1)
        b.start()
        tasks = [asyncio.ensure_future(b.submit(i)) for i in range(6)]
        done = await asyncio.gather(*tasks, return_exceptions=True)
        refused = [d for d in done if isinstance(d, RequestError)]
        assert refused and all(r.code == ErrorCode.RESOURCE_EXHAUSTED for r in refused)
        assert b.stats.requests_rejected_full == len(refused)
        await b.stop()

    asyncio.run(main())


def test_failed_step_fails_every_caller_and_batcher_goes_on() -> None:
    async def main() -> None:
        calls = 0

        def run(jobs: Sequence[int]) -> list[int]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return list(jobs)

        b: DynamicBatcher[int, int] = DynamicBatcher(
            run, max_batch_size=4, max_delay_s=0.02, max_queue_size=10
        )
        b.start()
        out = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
        assert all(isinstance(o, RequestError) and o.code == ErrorCode.INTERNAL for o in out)
        assert await b.submit(3) == 3
        await b.stop()
        with pytest.raises(RequestError):
            await b.submit(4)

    asyncio.run(main())


def test_jobs_that_waited_through_a_model_step_do_not_wait_again() -> None:
    """The fill window counts from the oldest job's arrival: a job that waited through a step runs at once."""

    async def main() -> None:
        starts: list[tuple[float, list[int]]] = []

        def run(jobs: Sequence[int]) -> list[int]:
            starts.append((time.monotonic(), list(jobs)))
            time.sleep(0.6)
            return [j * 10 for j in jobs]

        b: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch_size=8, max_delay_s=0.5, max_queue_size=8)
        b.start()
        first = [asyncio.ensure_future(b.submit(i)) for i in (1, 2, 3)]  # one step of 3 jobs
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(b.submit(4))  # queues alone while that step runs
        assert await asyncio.gather(*first) == [10, 20, 30] and await late == 40
        assert [jobs for _, jobs in starts] == [[1, 2, 3], [4]]
        # Job 4 is alone, fewer than the previous step's 3, so it may wait for company, but only until it has
        # waited 0.5 s since it arrived, which it already did during the 0.6 s step: it runs at once. A
        # window counted from the end of that step would hold it 0.5 s more.
        gap = starts[1][0] - (starts[0][0] + 0.6)
        assert gap < 0.3, gap
        await b.stop()

    asyncio.run(main())


def test_closed_loop_callers_do_not_wait_out_the_window() -> None:
    """A batch as large as the previous step runs at once: 4 callers looping never wait the 1 s window."""

    async def main() -> None:
        b, seen = make(delay_s=1.0)
        b.start()
        loop = asyncio.get_running_loop()

        async def caller(i: int) -> None:
            for _ in range(5):
                assert await b.submit(i) == i * 10

        t0 = loop.time()
        await asyncio.gather(*(caller(i) for i in range(4)))
        assert loop.time() - t0 < 0.5  # a window-bound batcher would take ~4 s here
        assert sum(len(s) for s in seen) == 20 and max(len(s) for s in seen) == 4
        await b.stop()

    asyncio.run(main())


def test_when_load_drops_the_window_bounds_the_wait() -> None:
    async def main() -> None:
        b, seen = make(delay_s=0.2)
        b.start()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(b.submit(i) for i in range(4)))  # the last step served 4 callers
        t0 = loop.time()
        assert await b.submit(9) == 90  # alone now: waits for company, at most the window
        assert 0.15 <= loop.time() - t0 < 1.0
        assert seen[-1] == [9]
        await b.stop()

    asyncio.run(main())
