"""Channel options shared by Client and AsyncClient: message sizes, keepalive, retries on UNAVAILABLE."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 10.0
# The server refuses requests and responses above its own limit (16 MiB by default); the client accepts
# anything up to 64 MiB so a server configured larger still works, and sends at most 16 MiB.
MAX_SEND_BYTES = 16 * 1024 * 1024
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
SERVICE = "movierec.v1.RecommenderService"

# gRPC's own transparent retry (not a hand-written loop): UNAVAILABLE (server restarting, connection
# refused) is retried with exponential backoff; other codes are final.
SERVICE_CONFIG: dict[str, Any] = {
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
