"""Dynamic batching, deadlines, queue limits and graceful shutdown, read from the server's counters."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest

from movierec.client import AsyncClient, Client, MovieRecError


def test_concurrent_calls_are_batched_and_match_unbatched_scoring(make_server: Any, scorer: Any) -> None:
    srv = make_server(max_delay_ms=50, max_batch_size=64)
    users = scorer.users.raw[:32].tolist()
    before = srv.stats

    async def main() -> list[Any]:
        async with AsyncClient(srv.target, timeout=20) as ac:
            await ac.health()  # connect first so the calls arrive together
            return await asyncio.gather(*(ac.recommend(u, k=6) for u in users))

    results = asyncio.run(main())
    after = srv.stats
    calls = after.requests_served - before.requests_served
    steps = after.batches_run - before.batches_run
    assert calls == len(users)
    assert steps < calls, f"{calls} calls took {steps} model steps: no batching"
    assert max(after.batch_sizes) > 1
    for u, recs in zip(users, results, strict=True):  # identical to scoring each user alone
        idx = scorer.users.to_index([u])
        items, scores = scorer.topk(scorer.history.rows(idx), 6)
        np.testing.assert_array_equal(recs[0].movie_ids, scorer.items.raw[items[0][items[0] >= 0]])
        np.testing.assert_allclose(recs[0].scores, scores[0][items[0] >= 0], rtol=1e-5, atol=1e-6)


def test_expired_requests_are_skipped_not_scored(make_server: Any, scorer: Any, gated: Any) -> None:
    srv = make_server(gated, max_delay_ms=0)
    users = scorer.users.raw[:2].tolist()
    with Client(srv.target, timeout=60) as c, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(c.recommend, users[0], 3)
        assert gated.entered.wait(gated.WAIT_S), "the first call never reached the model"  # it holds the model
        with pytest.raises(MovieRecError) as exc:
            c.recommend([users[1]] * 7, k=3, timeout=0.15)  # 7 rows: recognizable if scored
        assert exc.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        gated.release.set()
        busy.result(gated.WAIT_S)
        deadline = time.monotonic() + gated.WAIT_S
        while srv.stats.requests_dropped_expired + srv.stats.requests_dropped_cancelled < 1:
            assert time.monotonic() < deadline, "expired request was not dropped"
            time.sleep(0.02)
    assert 7 not in gated.rows_scored


def test_full_queue_answers_resource_exhausted(make_server: Any, scorer: Any, slow: Any) -> None:
    srv = make_server(slow(0.3), max_queue_size=1, max_batch_size=1, max_delay_ms=0)
    user = int(scorer.users.raw[0])

    async def main() -> list[Any]:
        async with AsyncClient(srv.target, timeout=20) as ac:
            await ac.health()
            return await asyncio.gather(*(ac.recommend(user, k=3) for _ in range(8)), return_exceptions=True)

    out = asyncio.run(main())
    errors = [r for r in out if isinstance(r, BaseException)]
    assert errors, "no request was refused"
    assert all(isinstance(e, MovieRecError) and e.code == grpc.StatusCode.RESOURCE_EXHAUSTED for e in errors)
    assert "queue is full" in errors[0].details
    assert srv.stats.requests_rejected_full == len(errors)
    assert len(out) - len(errors) >= 2


def test_graceful_shutdown_finishes_call_in_flight(make_server: Any, scorer: Any, gated: Any) -> None:
    srv = make_server(gated, max_delay_ms=0)
    user = int(scorer.users.raw[0])
    with Client(srv.target, timeout=60) as c, ThreadPoolExecutor(1) as pool:
        assert c.health() == "SERVING"
        in_flight = pool.submit(c.recommend, user, 3)
        assert gated.entered.wait(gated.WAIT_S), "the call never reached the model"  # held in the model step
        stopping = srv.stop(grace=gated.WAIT_S)
        # new calls are refused once stopping
        deadline = time.monotonic() + gated.WAIT_S
        while True:
            with pytest.raises(MovieRecError) as exc:
                c.recommend(user, k=3, timeout=1)
            if exc.value.code == grpc.StatusCode.UNAVAILABLE:
                break
            # accepted just before the server stopped listening: it queued, then timed out or was cancelled
            assert exc.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED), exc.value
            assert time.monotonic() < deadline, "new calls were still accepted while stopping"
        gated.release.set()
        recs = in_flight.result(gated.WAIT_S)
        assert recs[0].user_id == user and len(recs[0]) == 3
        stopping.result(gated.WAIT_S)
    from grpc_health.v1 import health_pb2

    async def status() -> int:
        return (await srv.server.health.Check(health_pb2.HealthCheckRequest(), None)).status  # type: ignore[arg-type]

    assert srv.run(status()).result(5) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_stream_cancel_drops_queued_work(make_server: Any, scorer: Any, slow: Any) -> None:
    from movierec.client import RecommendQuery

    srv = make_server(slow(0.2), max_delay_ms=0, max_batch_size=1)
    user = int(scorer.users.raw[0])
    stop = threading.Event()

    def many() -> Any:
        for i in range(50):
            if stop.is_set():
                return
            yield RecommendQuery([user], k=2, request_id=str(i))

    with Client(srv.target, timeout=30) as c:
        it = c.stream(many())
        first = next(it)
        assert first.ok
        stop.set()
        it.close()
        time.sleep(0.8)
        st = srv.stats
        assert st.requests_served < 50
        assert c.recommend(user, k=2)[0].user_id == user
