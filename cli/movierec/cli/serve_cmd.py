"""`movierec serve`: serve a trained artifact over gRPC (flags win over MOVIEREC_* environment variables).

The server (torch, grpc reflection: the `movierec[server]` extra) is imported inside the handler, so
`movierec --help` and the client commands need no torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from movierec.cli import CliError

# flag name -> (type, help); defaults live in movierec.server.config.ServerSettings (env: MOVIEREC_<NAME>)
FLAGS: dict[str, tuple[type, str]] = {
    "artifact": (
        str,
        "artifact folder written by `movierec train`, or a folder of versions (the newest complete one is "
        "served and a newer one is swapped in live; env MOVIEREC_ARTIFACT)",
    ),
    "host": (str, "address to bind (default 127.0.0.1; non-loopback needs TLS or --insecure)"),
    "port": (int, "port to bind, 0 = any free port (default 50051, env MOVIEREC_PORT)"),
    "device": (str, "auto | cpu | cuda | cuda:N (default auto, env MOVIEREC_DEVICE)"),
    "torch_threads": (int, "torch intra-op threads; 0 = torch's default (default 1: batching, not threads, "
                      "gives online throughput, and one thread avoids thread wake-up latency)"),
    "max_batch_size": (int, "most users scored in one model step (default 256)"),
    "max_delay_ms": (float, "longest a request waits for company in a batch, milliseconds (default 4)"),
    "max_queue_size": (int, "requests waiting for the model before RESOURCE_EXHAUSTED (default 1024)"),
    "max_users_per_call": (int, "most users or rating vectors in one request (default 1000)"),
    "max_message_bytes": (int, "request/response size limit in bytes (default 16 MiB)"),
    "max_stream_inflight": (int, "requests of one stream scored concurrently (default 64)"),
    "grace_s": (float, "seconds in-flight calls get to finish on SIGTERM/SIGINT (default 10)"),
    "log_level": (str, "DEBUG | INFO | WARNING (default INFO)"),
    "max_k": (int, "largest k per list, also capped at the catalog size (default 1000)"),
    "max_concurrent_streams": (int, "streaming calls open at once, server-wide (default 64)"),
    "watch_interval_s": (float, "seconds between checks for a new model; 0 = only on SIGHUP (default 2)"),
    "tls_cert": (str, "PEM certificate chain: serve TLS (with --tls-key)"),
    "tls_key": (str, "PEM private key for --tls-cert"),
    "tls_client_ca": (str, "PEM CA bundle: require client certificates signed by it (mutual TLS)"),
    "auth_token_file": (str, "file of bearer tokens, one per line: every call but health needs one"),
    "max_movies_per_upsert": (int, "most movies in one UpsertMovies call (default 1000)"),
    "workers": (
        str,
        "server processes sharing the port (SO_REUSEPORT), N or auto = one per core (default 1); limits such "
        "as --max-queue-size and --max-concurrent-streams apply per worker",
    ),
    "event_loop": (
        str,
        "auto | uvloop | asyncio: the asyncio event loop each server process runs (default auto: uvloop when "
        "installed, which costs less CPU per call; asyncio for its debug mode)",
    ),
    "metrics_port": (
        int,
        "serve Prometheus metrics on http://HOST:PORT/metrics; 0 = any free port (logged); default off",
    ),
    "metrics_host": (str, "address for --metrics-port (default: --host)"),
    "http_port": (
        int,
        "also serve HTTP/JSON (/v1/..., OpenAPI at /openapi.json) and the web page (/) on this port, from the "
        "same process and model; 0 = any free port (logged); default off. Same TLS, tokens and limits as gRPC",
    ),
    "http_host": (str, "address for --http-port (default: --host)"),
    "catalog_overlay": (
        str,
        "JSON file keeping the movies added or updated with UpsertMovies, rewritten atomically on each call "
        "(default: beside the served model, never inside an artifact: <artifact>/added-movies.json for a "
        "folder of versions, else <artifact>.added-movies.json next to the artifact folder); a corrupt file "
        "stops the server from starting",
    ),
}
# on/off flags (store_true); env MOVIEREC_<NAME>=1 works too
SWITCHES: dict[str, str] = {
    "insecure": "allow plain-text gRPC on a non-loopback --host (default: refused)",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="serve a trained artifact over gRPC")
    for name, (typ, text) in FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=text)
    for name, text in SWITCHES.items():
        parser.add_argument("--" + name, dest=name, action="store_true", default=None, help=text)
    parser.set_defaults(handler=_serve, extra="server")


def _serve(args: argparse.Namespace) -> int:
    import logging

    from movierec.server import event_loop
    from movierec.server.config import ServerSettings

    try:
        settings = ServerSettings.from_sources({name: getattr(args, name) for name in [*FLAGS, *SWITCHES]})
        event_loop.resolve(settings.event_loop)  # an explicit uvloop that is not installed: refused up front
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not (settings.artifact / "manifest.json").exists() and not settings.artifact.is_dir():
        raise CliError(f"artifact not found: {settings.artifact} (train one with `movierec train`)")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from movierec.core.artifact import ArtifactError

    try:
        if settings.n_workers > 1:
            # the supervisor imports no gRPC and no prometheus_client before it has set up the workers
            from movierec.server.workers import run

            return run(settings)
        from movierec.server.app import serve

        event_loop.run(serve(settings), settings.event_loop)
    except ArtifactError as exc:
        raise CliError(f"cannot load artifact {settings.artifact}: {exc}") from None
    except ValueError as exc:  # unreadable token file or TLS files
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot serve on {settings.host}:{settings.port}: {exc}") from None
    return 0
