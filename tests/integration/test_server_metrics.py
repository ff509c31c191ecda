"""Prometheus metrics of one server process: scrape /metrics around a burst of calls; the counts per status
code equal what was sent (errors included: refused by the guard, malformed, invalid, unknown user), and the
movierec metrics (batches, drops, model info) move with them. Tracing: off unless configured; with the SDK's
in-memory exporter, a server span per call and model-step spans linked to the calls they served."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from scrape import handled, scrape, value
from waiting import wait_for

from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc

TOKEN = "metrics-test-token-0123456789"
METHOD = "Recommend"


async def burst(target: str, users: list[int], n_ok: int) -> dict[str, int]:
    """Send a known mix of calls; returns what the client saw per status code."""
    auth = (("authorization", f"Bearer {TOKEN}"),)
    seen: dict[str, int] = {}
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.RecommenderServiceStub(ch)
        raw = ch.unary_unary(f"/movierec.v1.RecommenderService/{METHOD}")
        calls = (
            [stub.Recommend(pb.RecommendRequest(user_ids=[users[i % len(users)]], k=3), metadata=auth)
             for i in range(n_ok)]
            + [stub.Recommend(pb.RecommendRequest(user_ids=[-5 - i], k=3), metadata=auth) for i in range(4)]
            + [stub.Recommend(pb.RecommendRequest(user_ids=[users[0]], k=0), metadata=auth) for _ in range(3)]
            + [stub.Recommend(pb.RecommendRequest(user_ids=[users[0]], k=3)) for _ in range(2)]  # no token
            + [raw(b"\xff\xff\xff\x01", metadata=auth)]  # not a RecommendRequest
        )  # fmt: skip
        for result in await asyncio.gather(*calls, return_exceptions=True):
            code = result.code().name if isinstance(result, grpc.aio.AioRpcError) else "OK"
            seen[code] = seen.get(code, 0) + 1
    return seen


def test_metrics_count_every_call_by_status(make_server: Any, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    srv = make_server(metrics_port=0, auth_token_file=str(tokens))
    url = f"http://127.0.0.1:{srv.server.metrics_port}/metrics"
    users = [int(u) for u in srv.server.engine.model.scorer.users.raw[:10]]
    before = scrape(url)
    seen = asyncio.run(burst(srv.target, users, 25))
    assert seen == {"OK": 25, "NOT_FOUND": 4, "INVALID_ARGUMENT": 4, "UNAUTHENTICATED": 2}
    wait_for(lambda: sum(handled(scrape(url), METHOD).values()) - sum(handled(before, METHOD).values()) >= 35,
             "every call of the burst counted")  # fmt: skip
    after = scrape(url)
    delta = {c: n - handled(before, METHOD).get(c, 0) for c, n in handled(after, METHOD).items()}
    assert {c: int(n) for c, n in delta.items() if n} == seen
    labels = {"grpc_service": "movierec.v1.RecommenderService", "grpc_method": METHOD, "grpc_type": "unary"}
    started = value(after, "grpc_server_started_total", **labels) - value(before, "grpc_server_started_total", **labels)
    assert started == 35
    timed = value(after, "grpc_server_handling_seconds_count", **labels)
    assert timed - value(before, "grpc_server_handling_seconds_count", **labels) == 35
    # the 25 good calls were scored in model steps; nothing dropped; one model serving
    assert value(after, "movierec_batch_size_users_sum") - value(before, "movierec_batch_size_users_sum") == 25
    assert value(after, "movierec_model_step_seconds_count") >= 1
    assert value(after, "movierec_requests_dropped_total") == 0
    assert value(after, "movierec_model_info", version=srv.server.engine.version) == 1
    assert value(after, "movierec_queue_depth") == 0
    names = {n for n, _ in after}
    assert not any("user_id" in dict(ls) or "movie_id" in dict(ls) for _, ls in after)
    assert {"movierec_model_loaded_timestamp_seconds", "movierec_model_load_seconds"} <= names


def test_full_queue_and_expired_deadlines_are_counted_as_drops(make_server: Any, gated: Any) -> None:
    srv = make_server(gated, metrics_port=0, max_queue_size=2)
    url = f"http://127.0.0.1:{srv.server.metrics_port}/metrics"
    user = int(srv.server.engine.model.scorer.users.raw[0])

    async def scenario() -> dict[str, int]:
        seen: dict[str, int] = {}
        async with grpc.aio.insecure_channel(srv.target) as ch:
            stub = pb_grpc.RecommenderServiceStub(ch)
            req = pb.RecommendRequest(user_ids=[user], k=3)
            first = asyncio.ensure_future(stub.Recommend(req))  # held in the model step by the gate
            await asyncio.to_thread(gated.entered.wait, 60)
            queued = [asyncio.ensure_future(stub.Recommend(req, timeout=1.0)) for _ in range(2)]
            await asyncio.to_thread(wait_for, lambda: srv.server.batcher.queued == 2, "two calls queued")
            try:
                await stub.Recommend(req)  # the queue is full
            except grpc.aio.AioRpcError as err:
                seen[err.code().name] = 1
            # the two queued calls' deadlines pass while the step is held
            for q in queued:
                with pytest.raises(grpc.aio.AioRpcError):
                    await q
            gated.release.set()
            await first
        return seen

    assert asyncio.run(scenario()) == {"RESOURCE_EXHAUSTED": 1}
    # gRPC cancels a call whose deadline passes: the batcher finds it cancelled (or, first, expired)
    wait_for(lambda: value(scrape(url), "movierec_requests_dropped_total") == 3,
             "the full-queue refusal and the two expired calls counted as dropped")  # fmt: skip
    after = scrape(url)
    assert value(after, "movierec_requests_dropped_total", reason="queue_full") == 1
    codes = handled(after, METHOD)
    assert codes.get("RESOURCE_EXHAUSTED") == 1 and codes.get("OK") == 1
    # the two expired calls: DEADLINE_EXCEEDED as a rule; CANCELLED if the cancellation came >0.1 s early
    assert codes.get("DEADLINE_EXCEEDED", 0) + codes.get("CANCELLED", 0) == 2


def test_no_metrics_and_no_tracing_unless_asked(make_server: Any) -> None:
    srv = make_server()
    assert srv.server.metrics is None and srv.server.metrics_port is None and srv.server.tracing is None
    assert [type(i).__name__ for i in srv.server.interceptors()] == ["GuardInterceptor"]
    assert srv.server.batcher.observer is None and srv.server.batcher.tracer is None


def test_tracing_env_switch() -> None:
    from movierec.server.tracing import enabled, provider_from_env

    assert not enabled({})
    assert not enabled({"OTEL_TRACES_EXPORTER": "none"})
    assert not enabled({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})
    assert enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert provider_from_env({}) is None
    provider = provider_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert provider is not None
    provider.shutdown()
    with pytest.raises(ValueError, match="no such span exporter"):
        provider_from_env({"OTEL_TRACES_EXPORTER": "no-such-exporter"})


def test_spans_per_call_and_model_steps_linked_to_them(scorer: Any, server_thread: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from movierec.client import Client
    from movierec.server.tracing import STEP_SPAN

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    class TracedServer(server_thread):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            import movierec.server.app as app

            original = app.RecommenderServer

            def make(scorer: Any, settings: Any) -> Any:
                return original(scorer, settings, tracer_provider=provider)

            app.RecommenderServer = make  # type: ignore[assignment, misc]
            try:
                super().__init__(scorer)
            finally:
                app.RecommenderServer = original  # type: ignore[misc]

    srv = TracedServer()
    try:
        users = [int(u) for u in scorer.users.raw[:6]]
        with Client(srv.target, timeout=30) as c:
            for u in users:
                c.recommend(u, k=3)
        wait_for(lambda: len([s for s in exporter.get_finished_spans() if s.name == STEP_SPAN]) >= 1,
                 "model step spans exported")  # fmt: skip
        wait_for(lambda: len([s for s in exporter.get_finished_spans() if s.name.endswith("/Recommend")]) == 6,
                 "one server span per call")  # fmt: skip
        spans = exporter.get_finished_spans()
        calls = [s for s in spans if s.name.endswith("/Recommend")]
        steps = [s for s in spans if s.name == STEP_SPAN]
        linked = {link.context.span_id for s in steps for link in s.links}
        assert {s.context.span_id for s in calls} <= linked
        assert sum(s.attributes["movierec.batch.users"] for s in steps) == 6
    finally:
        srv.close()
        provider.shutdown()
