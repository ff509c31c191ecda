"""Server settings: one dataclass, filled from CLI flags with environment-variable fallbacks."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from movierec.server.event_loop import CHOICES as EVENT_LOOPS

ENV_PREFIX = "MOVIEREC_"
DEFAULT_PORT = 50051
OVERLAY_FILE = "added-movies.json"


@dataclass(frozen=True)
class ServerSettings:
    """Every knob of `movierec serve`. Env var for field `x` is `MOVIEREC_X` (e.g. MOVIEREC_PORT)."""

    artifact: Path = Path("artifacts/ml-100k-u1")
    host: str = "127.0.0.1"  # plain text is only allowed on loopback (see `insecure`)
    port: int = DEFAULT_PORT  # 0 = pick a free port
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    torch_threads: int = 1  # intra-op threads; 0 = torch's default. See README, "Performance".
    max_batch_size: int = 256  # rows (users) per model step
    # Longest a request waits in the batcher for company (from its arrival), and only while its batch is smaller
    # than the previous one. 4 ms: on a loaded 2-core machine, 1 ms batches were so small that the model
    # thread's per-step cost took the CPU the event loop needed (c=64: ~900 vs ~1,500 calls/s, see README).
    max_delay_ms: float = 4.0
    max_queue_size: int = 1024  # requests waiting for the model; beyond: RESOURCE_EXHAUSTED
    max_users_per_call: int = 1000
    max_message_bytes: int = 16 * 1024 * 1024  # request and response limit on the server
    max_stream_inflight: int = 64  # requests of one stream being scored at once (backpressure beyond)
    grace_s: float = 10.0  # shutdown: time for in-flight calls to finish
    log_level: str = "INFO"
    # -- hardening -----------------------------------------------------------------------------------------
    max_k: int = 1000  # largest k per list (also capped at the catalog size)
    max_concurrent_streams: int = 64  # streaming calls open at once, server-wide; beyond: RESOURCE_EXHAUSTED
    watch_interval_s: float = 2.0  # poll the artifact (or versions folder) for a new model; 0 = only SIGHUP
    tls_cert: str = ""  # PEM server certificate chain; with tls_key: serve TLS
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA bundle: require client certificates signed by it (mutual TLS)
    auth_token_file: str = ""  # one bearer token per line; when set every call but health needs one
    insecure: bool = False  # allow plain text on a non-loopback address
    # -- catalog changes while serving (UpsertMovies) -------------------------------------------------------
    max_movies_per_upsert: int = 1000  # movies in one UpsertMovies call
    # JSON file of the movies added or updated while serving. `serve` turns "" into the default beside the
    # artifact (`overlay_path`); an Engine built directly with "" (tests, embedding) keeps them in memory only.
    catalog_overlay: str = ""
    # -- capacity and observability -------------------------------------------------------------------------
    event_loop: str = "auto"  # auto (uvloop when installed) | uvloop | asyncio: movierec.server.event_loop
    workers: str = "1"  # server processes sharing the port (SO_REUSEPORT); "auto" = one per core
    metrics_port: int = -1  # Prometheus /metrics over HTTP; -1 = off, 0 = any free port (logged)
    metrics_host: str = ""  # "" = the gRPC --host
    # -- HTTP/JSON and the web page (movierec.server.http_app) ----------------------------------------------
    http_port: int = -1  # JSON endpoints + the page at /; -1 = off, 0 = any free port (logged)
    http_host: str = ""  # "" = the gRPC --host; the same TLS, tokens and plain-text rule apply

    def __post_init__(self) -> None:
        checks = {
            "port": 0 <= self.port <= 65535,
            "torch_threads": self.torch_threads >= 0,
            "max_batch_size": self.max_batch_size >= 1,
            "max_delay_ms": self.max_delay_ms >= 0,
            "max_queue_size": self.max_queue_size >= 1,
            "max_users_per_call": self.max_users_per_call >= 1,
            "max_message_bytes": self.max_message_bytes >= 64 * 1024,
            "max_stream_inflight": self.max_stream_inflight >= 1,
            "grace_s": self.grace_s >= 0,
            "max_k": self.max_k >= 1,
            "max_concurrent_streams": self.max_concurrent_streams >= 1,
            "watch_interval_s": self.watch_interval_s >= 0,
            "max_movies_per_upsert": self.max_movies_per_upsert >= 1,
            "metrics_port": -1 <= self.metrics_port <= 65535,
            "http_port": -1 <= self.http_port <= 65535,
            "event_loop": self.event_loop in EVENT_LOOPS,
            "workers": self.workers == "auto" or (self.workers.isdigit() and 1 <= int(self.workers) <= 256),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid server settings: {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(
                f"invalid server settings: device={self.device!r}; use auto, cpu, cuda or cuda:N"
            )

        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("invalid server settings: --tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("invalid server settings: --tls-client-ca needs --tls-cert and --tls-key")
        if not self.tls and not self.insecure and not self.loopback:
            raise ValueError(
                f"invalid server settings: refusing plain-text gRPC on non-loopback host {self.host!r}; "
                "give --tls-cert/--tls-key, bind 127.0.0.1, or pass --insecure to allow it"
            )
        if self.http and not self.tls and not self.insecure and not is_loopback(self.http_bind_host):
            raise ValueError(
                f"invalid server settings: refusing plain-text HTTP on non-loopback --http-host "
                f"{self.http_bind_host!r}; give --tls-cert/--tls-key, bind 127.0.0.1, or pass --insecure"
            )

    def overlay_path(self) -> Path:
        """Where the movies added while serving are kept: `catalog_overlay` when set, else beside the served
        model, never inside an artifact directory (retraining replaces those whole): in a versions folder
        (`artifact` holds no manifest.json) `<artifact>/added-movies.json`, else the sibling file
        `<artifact>.added-movies.json`."""
        if self.catalog_overlay:
            return Path(self.catalog_overlay)
        source = self.artifact
        if source.is_dir() and not (source / "manifest.json").is_file():
            return source / OVERLAY_FILE
        served = source.resolve()
        return served.parent / f"{served.name}.{OVERLAY_FILE}"

    @property
    def n_workers(self) -> int:
        """Worker processes: the number given, or one per core the process may use for "auto"."""
        if self.workers == "auto":
            try:
                return max(1, len(os.sched_getaffinity(0)))
            except AttributeError:  # not Linux
                return max(1, os.cpu_count() or 1)
        return int(self.workers)

    @property
    def metrics(self) -> bool:
        return self.metrics_port >= 0

    @property
    def http(self) -> bool:
        return self.http_port >= 0

    @property
    def http_bind_host(self) -> str:
        return self.http_host or self.host

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def transport(self) -> str:
        """How the port is secured, for the startup log line."""
        if self.tls:
            return "mutual TLS" if self.tls_client_ca else "TLS"
        return "plain text (loopback only)" if self.loopback else "plain text (--insecure, NOT loopback)"

    @classmethod
    def env_name(cls, name: str) -> str:
        return ENV_PREFIX + name.upper()

    @classmethod
    def from_sources(
        cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> ServerSettings:
        """Flags (None = not given) win over environment variables, which win over defaults."""
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw: Any = flags.get(f.name)
            if raw is None:
                raw = env.get(cls.env_name(f.name))
            if raw is None:
                continue
            default = f.default
            try:
                if isinstance(default, bool):
                    values[f.name] = str(raw).lower() in ("1", "true", "yes", "on")
                elif isinstance(default, Path):
                    values[f.name] = Path(raw)
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = str(raw)
            except ValueError:
                raise ValueError(
                    f"invalid server settings: {f.name}={raw!r} (flag --{f.name.replace('_', '-')} or "
                    f"{cls.env_name(f.name)}) is not a {type(default).__name__}"
                ) from None
        return cls(**values)

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())


def is_loopback(host: str) -> bool:
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
