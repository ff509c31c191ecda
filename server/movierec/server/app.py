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
from movierec.server.engine import Engine, ScorerLike
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
        ("grpc.so_reuseport", 0),
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

    def __init__(self, scorer: ScorerLike, settings: ServerSettings) -> None:
        self.settings = settings
        self.engine = Engine(scorer, settings)
        self.health = health_aio.HealthServicer()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        tokens = read_tokens(settings.auth_token_file) if settings.auth_token_file else []
        self.guard = GuardInterceptor(tokens, settings.max_concurrent_streams)

    @property
    def batcher(self) -> Any:
        return self.engine.batcher

    async def start(self) -> int:
        """Bind, start the batcher, report SERVING; returns the bound port."""
        s = self.settings
        server = grpc.aio.server(options=server_options(s), interceptors=[self.guard])
        pb_grpc.add_RecommenderServiceServicer_to_server(
            RecommenderServicer(self.engine, s.max_stream_inflight), server
        )
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
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, let in-flight calls finish within `grace` seconds, stop the batcher."""
        if self._server is None:
            return
        grace = self.settings.grace_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        await self.engine.batcher.stop()
        self._server = None


async def serve(settings: ServerSettings) -> None:
    """Load, warm up, serve until SIGTERM/SIGINT, shut down gracefully; reload the model on change/SIGHUP."""
    t0 = time.perf_counter()
    log.info("movierec server starting: %s", settings.describe())
    if settings.torch_threads:  # applied in every thread that scores (see device.apply_thread_policy)
        from movierec.core.device import configure_threads

        configure_threads(settings.torch_threads)
    # movies added while serving are kept beside the served model (never inside an artifact directory)
    settings = dataclasses.replace(settings, catalog_overlay=str(settings.overlay_path()))
    manager = ModelManager(settings.artifact, device=settings.device)
    scorer, served = await asyncio.to_thread(manager.load_initial)
    server = RecommenderServer(scorer, settings)  # loads the overlay: OverlayError (ValueError) if unusable
    manager.attach(server.engine)
    port = await server.start()
    engine = server.engine
    if not engine.overlay_file.writable():
        log.warning("movierec catalog overlay %s: not writable; UpsertMovies will fail", settings.catalog_overlay)
    info = engine.model.scorer.info
    log.info(
        "movierec server serving on %s:%d (%s; auth %s): model %s (%s, %d users, %d movies, %d of them added "
        "while serving, kept in %s) from %s on %s, ready in %.1fs",
        settings.host,
        port,
        settings.transport(),
        f"bearer tokens ({server.guard.token_count})" if server.guard.token_count else "off",
        info.version,
        info.dataset,
        info.n_users,
        engine.model.n_items,
        len(engine.overlay.added),
        settings.catalog_overlay,
        describe_source(settings.artifact, served),
        scorer.device,
        time.perf_counter() - t0,
    )
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
    await stop.wait()
    log.info("movierec server stopping: finishing in-flight calls (grace %.1fs)", settings.grace_s)
    await manager.stop()
    await server.stop()
    st = server.batcher.stats
    log.info(
        "movierec server stopped: %d requests in %d batches, %d expired, %d cancelled, %d rejected (queue full)",
        st.requests_served,
        st.batches_run,
        st.requests_dropped_expired,
        st.requests_dropped_cancelled,
        st.requests_rejected_full,
    )
