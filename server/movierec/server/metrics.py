"""Prometheus metrics (`--metrics-port`): the standard gRPC server families plus movierec's own.

gRPC (the names of go-grpc-prometheus / py-grpc-prometheus, so existing dashboards work):
  grpc_server_started_total{grpc_type,grpc_service,grpc_method}            calls started
  grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}  calls finished, by status code
  grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}         histogram, start to status
movierec:
  movierec_queue_depth                         requests waiting for the model (sum over workers)
  movierec_batch_size_users                    histogram: users (rows) scored per model step
  movierec_batch_size_requests                 histogram: requests served per model step
  movierec_model_step_seconds                  histogram: one model step (gather, score, top-k, ids)
  movierec_requests_dropped_total{reason}      deadline | cancelled | queue_full: never scored
  movierec_model_info{version,dataset,device}  1 for each version served now (0: served before)
  movierec_model_loaded_timestamp_seconds      when the version serving now started serving (unix time)
  movierec_model_load_seconds                  how long loading + warming that version took
  movierec_device_memory_bytes{kind}           CUDA only: allocated | reserved, after each model step
  movierec_worker_restarts_total               worker processes restarted by the supervisor (--workers)
No label carries a user or movie id.

With one worker the metrics live in a private registry served by a thread of the server process. With
`--workers N` the supervisor sets PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client, every
worker writes its values to memory-mapped files there (prometheus-client's multiprocess mode) and one small
process serves `/metrics` summed over the workers (`MultiProcessCollector`); gauges say how they are summed.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# seconds: 0.25 ms .. 10 s (calls at concurrency 1 take ~1-2 ms, bulk streams seconds)
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0,
                   2.5, 5.0, 10.0)  # fmt: skip
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0)
DROP_REASONS = ("deadline", "cancelled", "queue_full")


def multiprocess() -> bool:
    """Whether values go to PROMETHEUS_MULTIPROC_DIR (set by the supervisor of `--workers N`)."""
    return MULTIPROC_ENV in os.environ


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class ServerMetrics:
    """Every metric of one server process. Each instance has its own registry (several servers in one test
    process do not clash); in multiprocess mode the values also go to the shared files."""

    registry: CollectorRegistry
    started: Counter
    handled: Counter
    handling: Histogram
    queue_depth: Gauge
    batch_users: Histogram
    batch_requests: Histogram
    step_seconds: Histogram
    dropped: Counter
    model_info: Gauge
    model_loaded: Gauge
    model_load_seconds: Gauge
    device_memory: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ServerMetrics:
        reg = registry if registry is not None else _registry()
        grpc_labels = ("grpc_type", "grpc_service", "grpc_method")
        m = cls(
            registry=reg,
            started=Counter("grpc_server_started_total", "RPCs started on the server.", grpc_labels, registry=reg),
            handled=Counter(
                "grpc_server_handled_total", "RPCs completed on the server, regardless of success or failure.",
                (*grpc_labels, "grpc_code"), registry=reg,
            ),  # fmt: skip
            handling=Histogram(
                "grpc_server_handling_seconds", "Response latency (seconds) of gRPC calls handled by the server.",
                grpc_labels, buckets=LATENCY_BUCKETS, registry=reg,
            ),  # fmt: skip
            queue_depth=Gauge(
                "movierec_queue_depth", "Requests waiting for the model (all workers).",
                registry=reg, multiprocess_mode="livesum",
            ),  # fmt: skip
            batch_users=Histogram(
                "movierec_batch_size_users", "Users (rows) scored per model step.", buckets=SIZE_BUCKETS,
                registry=reg,
            ),  # fmt: skip
            batch_requests=Histogram(
                "movierec_batch_size_requests", "Requests served per model step.", buckets=SIZE_BUCKETS,
                registry=reg,
            ),  # fmt: skip
            step_seconds=Histogram(
                "movierec_model_step_seconds", "Duration of one model step (gather, score, top-k, ids).",
                buckets=STEP_BUCKETS, registry=reg,
            ),  # fmt: skip
            dropped=Counter(
                "movierec_requests_dropped_total",
                "Requests never scored: deadline passed while queued, caller cancelled, or queue full.",
                ("reason",), registry=reg,
            ),  # fmt: skip
            model_info=Gauge(
                "movierec_model_info", "1 for each model version serving now, 0 for versions served before.",
                ("version", "dataset", "device"), registry=reg, multiprocess_mode="livemax",
            ),  # fmt: skip
            model_loaded=Gauge(
                "movierec_model_loaded_timestamp_seconds", "Unix time the serving model version started serving.",
                registry=reg, multiprocess_mode="livemax",
            ),  # fmt: skip
            model_load_seconds=Gauge(
                "movierec_model_load_seconds", "Seconds loading and warming the serving model version took.",
                registry=reg, multiprocess_mode="livemax",
            ),  # fmt: skip
            device_memory=Gauge(
                "movierec_device_memory_bytes", "CUDA memory of the model process (allocated | reserved).",
                ("kind",), registry=reg, multiprocess_mode="livesum",
            ),  # fmt: skip
        )
        for reason in DROP_REASONS:
            m.dropped.labels(reason)  # present (0) from the start
        return m

    # -- hooks called by the server -----------------------------------------------------------------------
    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped.labels(reason).inc(n)

    def model_served(self, version: str, dataset: str, device: str, load_seconds: float,
                     previous: tuple[str, str, str] | None) -> None:  # fmt: skip
        if previous is not None and previous != (version, dataset, device):
            self.model_info.labels(*previous).set(0)
        self.model_info.labels(version, dataset, device).set(1)
        self.model_loaded.set(time.time())
        self.model_load_seconds.set(load_seconds)

    def device_memory_sample(self, device: Any) -> None:
        """After a model step on CUDA: allocated and reserved bytes (cheap counters, no device sync)."""
        import torch

        self.device_memory.labels("allocated").set(torch.cuda.memory_allocated(device))
        self.device_memory.labels("reserved").set(torch.cuda.memory_reserved(device))


def worker_restarts_counter() -> Counter:
    """The supervisor's counter (multiprocess mode: its value is in the shared files)."""
    return Counter("movierec_worker_restarts_total", "Worker processes restarted after they died.",
                   registry=_registry())  # fmt: skip


def serve_http(host: str, port: int, registry: CollectorRegistry | None) -> tuple[Any, int]:
    """Serve `/metrics` on host:port (0 = any free port) in a daemon thread; returns (server, bound port).
    `registry` None: the multiprocess view (every worker's files summed)."""
    if registry is None:
        from prometheus_client import multiprocess as mp

        registry = _registry()
        mp.MultiProcessCollector(registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_port)


def mark_dead(pid: int) -> None:
    """A worker exited: drop its live gauges from the multiprocess view."""
    from prometheus_client import multiprocess as mp

    mp.mark_process_dead(pid)


# -- the gRPC interceptor ---------------------------------------------------------------------------------
def _kind(h: grpc.RpcMethodHandler) -> str:
    if h.request_streaming and h.response_streaming:
        return "bidi_stream"
    if h.request_streaming:
        return "client_stream"
    if h.response_streaming:
        return "server_stream"
    return "unary"


def _code_name(context: grpc.aio.ServicerContext, default: str) -> str:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code.name
    return _BY_INT.get(code, default) if isinstance(code, int) else default


_BY_INT = {c.value[0]: c.name for c in grpc.StatusCode}


def _cancelled_code(context: grpc.aio.ServicerContext) -> str:
    # gRPC cancels the handler when the deadline passes; the cancellation can reach it a little before this
    # process's clock says the deadline passed, hence the margin
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0.1 else "CANCELLED"


class _Recorder:
    """The label children of one method (looked up once, not per call)."""

    def __init__(self, metrics: ServerMetrics, kind: str, service: str, name: str) -> None:
        self.metrics = metrics
        self.labels = (kind, service, name)
        self.started = metrics.started.labels(*self.labels)
        self.handling = metrics.handling.labels(*self.labels)
        self._handled: dict[str, Any] = {}

    def done(self, code: str, t0: float) -> None:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self.metrics.handled.labels(*self.labels, code)
        child.inc()
        self.handling.observe(time.perf_counter() - t0)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every call (first in the interceptor chain, so calls the guard refuses count too)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._recorders: dict[tuple[str, str], _Recorder] = {}

    def _recorder(self, method: str, kind: str) -> _Recorder:
        rec = self._recorders.get((method, kind))
        if rec is None:
            service, _, name = method.lstrip("/").rpartition("/")
            rec = self._recorders[(method, kind)] = _Recorder(self.metrics, kind, service, name)
        return rec

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method or ""
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _wrap(handler, self._recorder(method, _kind(handler)))
        self._wrapped[method] = (handler, wrapped)  # handlers refused per call replace it: cheap either way
        return wrapped


def _wrap(h: grpc.RpcMethodHandler, rec: _Recorder) -> grpc.RpcMethodHandler:
    des, ser = h.request_deserializer, h.response_serializer
    if not h.response_streaming:
        inner_unary = h.stream_unary if h.request_streaming else h.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            rec.started.inc()
            t0 = time.perf_counter()
            code = "UNKNOWN"
            try:
                response = await inner_unary(request, context)
                code = _code_name(context, "OK")
                return response
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            except Exception:
                raise
            except BaseException:  # CancelledError: the caller went away or its deadline passed
                code = _cancelled_code(context)
                raise
            finally:
                rec.done(code, t0)

        if h.request_streaming:
            return grpc.stream_unary_rpc_method_handler(unary, des, ser)
        return grpc.unary_unary_rpc_method_handler(unary, des, ser)

    inner_stream = h.stream_stream if h.request_streaming else h.unary_stream

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        rec.started.inc()
        t0 = time.perf_counter()
        code = "UNKNOWN"
        try:
            async for response in inner_stream(request, context):
                yield response
            code = _code_name(context, "OK")
        except grpc.aio.AbortError:
            code = _code_name(context, "UNKNOWN")
            raise
        except Exception:
            raise
        except BaseException:  # CancelledError / GeneratorExit: the caller went away or its deadline passed
            code = _cancelled_code(context)
            raise
        finally:
            rec.done(code, t0)

    if h.request_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, des, ser)
    return grpc.unary_stream_rpc_method_handler(streaming, des, ser)


class BatcherMetrics:
    """The batcher's `BatchObserver`: queue depth, drops, step sizes and durations (and CUDA memory)."""

    def __init__(self, metrics: ServerMetrics, cuda_device: Any = None) -> None:
        self.m = metrics
        self.cuda_device = cuda_device  # set: sample device memory after each step
        self._drops = {r: metrics.dropped.labels(r) for r in DROP_REASONS}

    def queued(self, depth: int) -> None:
        self.m.queue_depth.set(depth)

    def dropped(self, reason: str, n: int) -> None:
        self._drops[reason].inc(n)

    def step(self, requests: int, rows: int, seconds: float) -> None:
        self.m.batch_requests.observe(requests)
        self.m.batch_users.observe(rows)
        self.m.step_seconds.observe(seconds)
        if self.cuda_device is not None:
            self.m.device_memory_sample(self.cuda_device)
