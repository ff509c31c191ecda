"""DynamicBatcher(inline_max_s=...): cheap steps of a few rows run on the event loop (no hand-off to the model
thread); larger steps, slow steps and batchers without the option keep running in the model thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from movierec.server.batcher import INLINE_MAX_ROWS, DynamicBatcher


def run_threads(inline_max_s: float, step_s: float, rows: int, n: int = 4, idle_s: float = 0.05) -> list[str]:
    """Thread names that ran each of `n` sequential jobs of `rows` rows, `idle_s` apart (a lone caller)."""

    async def main() -> list[str]:
        names: list[str] = []

        def run(jobs: Sequence[int]) -> list[int]:
            names.append(threading.current_thread().name)
            time.sleep(step_s)
            return list(jobs)

        b: DynamicBatcher[int, int] = DynamicBatcher(
            run, max_batch_size=64, max_delay_s=0.0, max_queue_size=16, rows_of=lambda j: j,
            inline_max_s=inline_max_s,
        )  # fmt: skip
        b.start()
        for _ in range(n):
            assert await b.submit(rows) == rows
            await asyncio.sleep(idle_s)
        await b.stop()
        return names

    return asyncio.run(main())


def test_cheap_small_steps_run_on_the_loop_after_the_first() -> None:
    names = run_threads(inline_max_s=1.0, step_s=0.0, rows=1)
    assert names[0].startswith("movierec-model")  # measured in the model thread first
    assert names[1:] == ["MainThread"] * 3


def test_a_busy_loop_keeps_the_model_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop that spent the wait before a request on CPU (not idle) hands the step to the model thread. The
    loop's CPU time is faked to equal the wall time, so the verdict does not hang on how the OS schedules
    the test's threads on a busy machine."""
    import movierec.server.batcher as batcher

    class BusyClock:
        perf_counter = staticmethod(time.perf_counter)
        thread_time = staticmethod(time.perf_counter)  # every second of the wait spent on CPU

    monkeypatch.setattr(batcher, "time", BusyClock)
    assert all(n.startswith("movierec-model") for n in run_threads(1.0, 0.0, 1))


def test_large_slow_or_default_steps_stay_in_the_model_thread() -> None:
    for names in (
        run_threads(inline_max_s=1.0, step_s=0.0, rows=INLINE_MAX_ROWS + 1),
        run_threads(inline_max_s=0.001, step_s=0.005, rows=1),
        run_threads(inline_max_s=0.0, step_s=0.0, rows=1),
    ):
        assert all(n.startswith("movierec-model") for n in names), names


def test_under_load_steps_stay_in_the_model_thread() -> None:
    """Requests arriving close together: the model thread runs the steps (they take what piled up)."""

    async def main() -> list[str]:
        names: list[str] = []

        def run(jobs: Sequence[int]) -> list[int]:
            names.append(threading.current_thread().name)
            time.sleep(0.0005)
            return list(jobs)

        b: DynamicBatcher[int, int] = DynamicBatcher(
            run, max_batch_size=2, max_delay_s=0.0, max_queue_size=1024, inline_max_s=1.0
        )  # fmt: skip
        b.start()
        await b.submit(1)  # a first small step, measured
        for _ in range(10):  # bursts of 100 at once: gaps of microseconds
            await asyncio.gather(*(b.submit(i) for i in range(100)))
        del names[:-20]
        await b.stop()
        return names

    names = asyncio.run(main())
    assert all(n.startswith("movierec-model") for n in names), names
