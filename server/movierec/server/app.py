"""The gRPC server: servicer + health + reflection on a grpc.aio server, warm-up, graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from movierec.server.auth import GuardInterceptor, read_tokens
from movierec.server.config import ServerSettings
from movierec.server.engine import Engine, LoadedModel, ScorerLike
from movierec.server.event_loop import running_loop_name
from movierec.server.metrics import BatcherMetrics, MetricsInterceptor, ServerMetrics, serve_http
from movierec.server.model_manager import ModelManager, describe_source
from movierec.server.servicer import SERVICE_NAME, RecommenderServicer
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc

log = logging.getLogger("movierec.server")


def server_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # accept client keepalive pings every >= 10 s (the SDK pings every 30 s) instead of GOAWAY-ing them
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # several worker processes share the port (--workers); one alone must own it (a taken port is an error)
        ("grpc.so_reuseport", 1 if settings.n_workers > 1 else 0),
    ]


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS (or mutual TLS with --tls-client-ca) credentials from PEM files; None = plain text."""
    if not settings.tls:
        return None

    def read(flag: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{flag} {path}: cannot read ({exc.strerror})") from None

    cert = read("--tls-cert", settings.tls_cert)
    key = read("--tls-key", settings.tls_key)
    ca = read("--tls-client-ca", settings.tls_client_ca) if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


class RecommenderServer:
    """One scorer served over gRPC: `await start()`, then `await stop()` (`serve` does both around signals)."""

    def __init__(
        self,
        scorer: ScorerLike,
        settings: ServerSettings,
        *,
        tracer_provider: Any = None,
        metrics_http: bool = True,
    ) -> None:
        """`tracer_provider`: an OpenTelemetry TracerProvider (None: no tracing, no cost; `serve` passes the
        one OTEL_* configures). `metrics_http` False: metrics are recorded (with --metrics-port) but served by
        another process (the supervisor of --workers N)."""
        self.settings = settings
        self.metrics = ServerMetrics.create() if settings.metrics else None
        self._metrics_http_wanted = metrics_http and settings.metrics
        self._metrics_http: Any = None
        self.metrics_port: int | None = None
        self.tracing = None
        if tracer_provider is not None:
            from movierec.server.tracing import StepTracing

            self.tracing = StepTracing(tracer_provider)
        cuda = str(scorer.device).startswith("cuda")
        observer = BatcherMetrics(self.metrics, scorer.device if cuda else None) if self.metrics else None
        self.engine = Engine(scorer, settings, observer=observer, tracer=self.tracing)
        self.health = health_aio.HealthServicer()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self.servicer = RecommenderServicer(self.engine, settings.max_stream_inflight)
        self.http: Any = None  # movierec.server.http_app.HttpFace with --http-port
        self.http_port: int | None = None
        tokens = read_tokens(settings.auth_token_file) if settings.auth_token_file else []
        self.guard = GuardInterceptor(tokens, settings.max_concurrent_streams)
        if self.metrics is not None:
            self._model_served(None, self.engine.model)  # `serve` records it again with the load time
            self.engine.on_swap.append(self._model_served)

    def _model_served(self, old: LoadedModel | None, new: LoadedModel) -> None:
        assert self.metrics is not None

        def labels(m: LoadedModel) -> tuple[str, str, str]:
            return (m.version, str(m.scorer.info.dataset), str(m.scorer.device))

        self.metrics.model_served(*labels(new), self.engine.load_seconds, labels(old) if old else None)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Metrics first (they count what the guard refuses), then tracing, then the guard."""
        out: list[grpc.aio.ServerInterceptor] = []
        if self.metrics is not None:
            out.append(MetricsInterceptor(self.metrics))
        if self.tracing is not None:
            out.append(self.tracing.interceptor())
        out.append(self.guard)
        return out

    @property
    def batcher(self) -> Any:
        return self.engine.batcher

    async def start(self) -> int:
        """Bind, start the batcher, report SERVING; returns the bound port."""
        s = self.settings
        server = grpc.aio.server(options=server_options(s), interceptors=self.interceptors())
        pb_grpc.add_RecommenderServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        creds = server_credentials(s)
        address = f"{s.host}:{s.port}"
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot bind {s.host}:{s.port}")
        self.engine.batcher.start()
        await server.start()
        self._server, self.port = server, port
        if s.http and self.http is None:  # HTTP/JSON + the page: same process, loop, engine, tokens, TLS
            from movierec.server.http_app import HttpFace

            http = HttpFace(self.servicer, self.guard, self.health, s)
            try:
                self.http_port = await http.start()
            except BaseException:
                await self.stop(0)
                raise
            self.http = http
        if self._metrics_http_wanted and self._metrics_http is None:
            assert self.metrics is not None
            self._metrics_http, self.metrics_port = serve_http(
                s.metrics_host or s.host, s.metrics_port, self.metrics.registry
            )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, let in-flight calls finish within `grace` seconds, stop the batcher."""
        if self._server is None:
            return
        grace = self.settings.grace_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        http, self.http = self.http, None
        await asyncio.gather(self._server.stop(grace), *([http.stop(grace)] if http is not None else []))
        await self.engine.batcher.stop()
        self._server = None
        if self._metrics_http is not None:
            http, self._metrics_http = self._metrics_http, None
            await asyncio.to_thread(http.shutdown)
            http.server_close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


OVERLAY_POLL_S = 0.25  # --workers N: how often each worker checks the overlay file for others' upserts


async def _poll_overlay(engine: Engine) -> None:
    while True:
        await asyncio.sleep(OVERLAY_POLL_S)
        try:
            await engine.refresh_overlay()
        except Exception:  # never let the poller die
            log.exception("movierec catalog overlay poller: unexpected error")


async def serve(
    settings: ServerSettings,
    *,
    preloaded: tuple[ScorerLike, Path, Any, float] | None = None,
    on_ready: Any = None,
) -> None:
    """Load, warm up, serve until SIGTERM/SIGINT, shut down gracefully; reload the model on change/SIGHUP.

    `preloaded` (scorer, path, fingerprint, load seconds): a model the supervisor of `--workers N` loaded
    before forking this worker (its pages stay shared). `on_ready(port)` is called once serving."""
    t0 = time.perf_counter()
    log.info("movierec server starting: %s", settings.describe())
    if settings.torch_threads:  # applied in every thread that scores (see device.apply_thread_policy)
        from movierec.core.device import configure_threads

        configure_threads(settings.torch_threads)
    # movies added while serving are kept beside the served model (never inside an artifact directory)
    settings = dataclasses.replace(settings, catalog_overlay=str(settings.overlay_path()))
    manager = ModelManager(settings.artifact, device=settings.device)
    if preloaded is None:
        scorer, served = await asyncio.to_thread(manager.load_initial)
        load_seconds = time.perf_counter() - t0
    else:
        scorer, served, fp, load_seconds = preloaded
        manager.adopt(fp)
    from movierec.server.tracing import provider_from_env

    tracer_provider = provider_from_env()
    # loads the overlay: OverlayError (ValueError) if unusable
    server = RecommenderServer(scorer, settings, tracer_provider=tracer_provider, metrics_http=on_ready is None)
    server.engine.load_seconds = load_seconds
    manager.attach(server.engine)
    if preloaded is not None and manager.stale():  # a restarted worker: the model changed since the fork
        await manager.reload()
    if server.metrics is not None:
        server._model_served(None, server.engine.model)
    port = await server.start()
    engine = server.engine
    if not engine.overlay_file.writable():
        log.warning("movierec catalog overlay %s: not writable; UpsertMovies will fail", settings.catalog_overlay)
    info = engine.model.scorer.info
    log.info(
        "movierec server serving on %s:%d (%s; auth %s; tracing %s; %s loop): model %s (%s, %d users, %d movies, "
        "%d of them added while serving, kept in %s) from %s on %s, ready in %.1fs",
        settings.host,
        port,
        settings.transport(),
        f"bearer tokens ({server.guard.token_count})" if server.guard.token_count else "off",
        "on" if tracer_provider is not None else "off",
        running_loop_name(),
        engine.model.version,
        info.dataset,
        info.n_users,
        engine.model.n_items,
        len(engine.overlay.added),
        settings.catalog_overlay,
        describe_source(settings.artifact, served),
        engine.model.scorer.device,
        time.perf_counter() - t0,
    )
    if server.http_port is not None:
        scheme = "https" if settings.tls else "http"
        log.info("movierec HTTP/JSON and the web page on %s://%s:%d/ (OpenAPI at /openapi.json)", scheme,
                 _url_host(settings.http_bind_host), server.http_port)  # fmt: skip
    if server.metrics_port is not None:
        log.info("movierec metrics on http://%s:%d/metrics", settings.metrics_host or settings.host, server.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = loop.create_task(manager.reload(force=True))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    manager.start_watching(settings.watch_interval_s)
    poller = loop.create_task(_poll_overlay(engine)) if settings.n_workers > 1 else None
    if on_ready is not None:
        on_ready(port)
    await stop.wait()
    log.info("movierec server stopping: finishing in-flight calls (grace %.1fs)", settings.grace_s)
    if poller is not None:
        poller.cancel()
    await manager.stop()
    await server.stop()
    if tracer_provider is not None:
        await asyncio.to_thread(tracer_provider.shutdown)  # flushes the spans not yet exported
    st = server.batcher.stats
    log.info(
        "movierec server stopped: %d requests in %d batches, %d expired, %d cancelled, %d rejected (queue full)",
        st.requests_served,
        st.batches_run,
        st.requests_dropped_expired,
        st.requests_dropped_cancelled,
        st.requests_rejected_full,
    )
