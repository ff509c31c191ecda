"""Channel options shared by Client and AsyncClient: message sizes, keepalive, retries on UNAVAILABLE."""

from __future__ import annotations

import collections
import json
import math
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import grpc
import grpc.aio

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 10.0
# The server refuses requests and responses above its own limit (16 MiB by default); the client accepts
# anything up to 64 MiB so a server configured larger still works, and sends at most 16 MiB.
MAX_SEND_BYTES = 16 * 1024 * 1024
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
SERVICE = "movierec.v1.RecommenderService"

# gRPC's own transparent retry (not a hand-written loop): UNAVAILABLE (server restarting, connection
# refused) is retried with exponential backoff; other codes are final. gRPC's own round_robin policy spreads
# calls over every address of the target (several servers, or a DNS name with several addresses) and
# skips the ones that are down, so a retried call lands on a live server.
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": SERVICE}, {"service": "grpc.health.v1.Health"}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


Targets = str | Sequence[str]


def resolve_target(target: Targets) -> str:
    """One gRPC target for one server ("host:port", "dns:///name:port", ...) or several ("host:port" each).

    Several servers become one `ipv4:`/`ipv6:` address-list target (host names resolved once, here), over
    which the channel balances calls with round_robin.
    """
    if isinstance(target, str):
        if "," in target and "://" not in target and not target.startswith(("ipv4:", "ipv6:")):
            return resolve_target([t.strip() for t in target.split(",") if t.strip()])
        return target
    targets = list(target)
    if not targets:
        raise ValueError("no target given")
    if len(targets) == 1:
        return targets[0]
    v4: list[str] = []
    v6: list[str] = []
    for t in targets:
        host, sep, port = t.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"target {t!r}: expected host:port")
        host = host.strip("[]")
        for family, *_, addr in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM):
            ip = str(addr[0])
            (v6 if family == socket.AF_INET6 else v4).append(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
            break
    if v4 and v6:
        raise ValueError("several targets must all be IPv4 or all IPv6 addresses")
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6))


def channel_options(extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    options: dict[str, Any] = {
        "grpc.max_send_message_length": MAX_SEND_BYTES,
        "grpc.max_receive_message_length": MAX_RECEIVE_BYTES,
        "grpc.keepalive_time_ms": 30_000,  # ping an idle connection every 30 s (the server allows >= 10 s)
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.http2.max_pings_without_data": 0,
        "grpc.enable_retries": 1,
        "grpc.service_config": json.dumps(SERVICE_CONFIG),
    }
    options.update(dict(extra))
    return list(options.items())


def resolve_timeout(timeout: float | None, default: float | None) -> float | None:
    """None -> the client's default; math.inf -> no deadline."""
    t = default if timeout is None else timeout
    return None if t is None or math.isinf(t) else float(t)


# -- TLS and bearer tokens -----------------------------------------------------------------------------------
PemLike = Union[bytes, str, "os.PathLike[str]"]


def _pem(value: PemLike | None) -> bytes | None:
    """PEM bytes as given, or read from a file path."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def tls_credentials(
    root_certificates: PemLike | None = None,
    client_cert: PemLike | None = None,
    client_key: PemLike | None = None,
) -> grpc.ChannelCredentials:
    """TLS channel credentials: the CA to trust (None = the system roots) and, for mutual TLS, the client's
    certificate chain and key (PEM bytes or file paths)."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together (mutual TLS)")
    return grpc.ssl_channel_credentials(_pem(root_certificates), _pem(client_key), _pem(client_cert))


class _Details(
    collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


def _with_token(metadata: Any, header: tuple[str, str]) -> list[tuple[str, Any]]:
    return [*(tuple(m) for m in (metadata or ())), header]


class _SyncToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call of a blocking channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d: Any) -> _Details:
        return _Details(
            d.method,
            d.timeout,
            _with_token(d.metadata, self._header),
            d.credentials,
            d.wait_for_ready,
            d.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def _aio_token_interceptors(token: str) -> list[Any]:
    """grpc.aio sorts interceptors by kind (one kind each), so the token needs four of them."""
    header = ("authorization", f"Bearer {token}")

    def details(d: Any) -> Any:
        return d._replace(metadata=grpc.aio.Metadata(*_with_token(d.metadata, header)))

    class UU(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, d: Any, request: Any) -> Any:
            return await continuation(details(d), request)

    class US(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation: Any, d: Any, request: Any) -> Any:
            return await continuation(details(d), request)

    class SU(grpc.aio.StreamUnaryClientInterceptor):
        async def intercept_stream_unary(self, continuation: Any, d: Any, requests: Any) -> Any:
            return await continuation(details(d), requests)

    class SS(grpc.aio.StreamStreamClientInterceptor):
        async def intercept_stream_stream(self, continuation: Any, d: Any, requests: Any) -> Any:
            return await continuation(details(d), requests)

    return [UU(), US(), SU(), SS()]


def open_channel(
    target: Targets,
    *,
    aio: bool = False,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    tls: bool = False,
    root_certificates: PemLike | None = None,
    client_cert: PemLike | None = None,
    client_key: PemLike | None = None,
    token: str | None = None,
) -> Any:
    """The channel behind Client (aio=False) and AsyncClient (aio=True).

    TLS when `credentials` is given, `tls=True`, or any of the PEM options is; `token` adds
    `authorization: Bearer <token>` metadata to every call (over TLS, or plain text on loopback).
    """
    target = resolve_target(target)
    opts = channel_options(options)
    if credentials is None and (tls or root_certificates or client_cert or client_key):
        credentials = tls_credentials(root_certificates, client_cert, client_key)
    if aio:
        interceptors = _aio_token_interceptors(token) if token else None
        if credentials is not None:
            return grpc.aio.secure_channel(target, credentials, options=opts, interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)
    channel = (
        grpc.secure_channel(target, credentials, options=opts)
        if credentials is not None
        else grpc.insecure_channel(target, options=opts)
    )
    return grpc.intercept_channel(channel, _SyncToken(token)) if token else channel
