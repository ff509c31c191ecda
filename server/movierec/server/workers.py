"""`movierec serve --workers N`: N server processes on one port, under a supervisor.

The pattern of grpc's `examples/python/multiprocessing`: the supervisor reserves the port with SO_REUSEPORT,
creates no gRPC state, and forks the workers; each worker builds its own grpc.aio server (option
`grpc.so_reuseport`), event loop, batcher and model thread, and the kernel spreads incoming connections over
them (a connection, and every call on it, stays with one worker).

- Memory. On CPU the supervisor loads and warms the model once before forking: the workers share its pages
  copy-on-write (weights, id maps and rating history are numpy/torch buffers that serving never writes), so
  a second worker costs its own Python heap and buffers, not a second model. A hot swap loads the new
  version in each worker (N copies until the next restart). On CUDA the supervisor loads nothing (a CUDA
  context does not survive fork): each worker loads the model into its own context.
- Signals. SIGTERM / SIGINT: every worker drains (NOT_SERVING, in-flight calls get --grace-s) and the
  supervisor exits when they have. SIGHUP is passed on: every worker reloads the model.
- A worker that dies is logged and started again (after a pause when it died young); the others serve on.
- Metrics (`--metrics-port`): prometheus-client's multiprocess mode; a metrics process forked before the
  workers serves the sum over them.
- Movies added with UpsertMovies reach every worker through the overlay file (see catalog_overlay).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from movierec.server.config import ServerSettings

log = logging.getLogger("movierec.server")

START_TIMEOUT_S = 300.0  # a worker that has not said "ready" by then is taken as failed
YOUNG_S = 10.0  # a worker that dies sooner after its start is restarted after RESTART_PAUSE_S
RESTART_PAUSE_S = 1.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket holding the port the workers will share."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bind_host = "localhost" if host == "localhost" else host.strip("[]")
    sock.bind((bind_host, port))
    return sock


def _uses_cuda(settings: ServerSettings) -> bool:
    if settings.device.startswith("cuda"):
        return True
    if settings.device != "auto":
        return False
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # asks NVML: does not initialize CUDA here
    import torch

    return bool(torch.cuda.is_available())


@dataclasses.dataclass
class _Worker:
    index: int
    pid: int
    started: float
    ready_fd: int


class Supervisor:
    def __init__(self, settings: ServerSettings) -> None:
        self.n = settings.n_workers
        self.stopping = False
        self.hup = False
        self.workers: dict[int, _Worker] = {}  # pid -> worker
        self.metrics_pid: int | None = None
        self.metrics_dir: str | None = None
        self.restarts: Any = None
        self.preloaded: tuple[Any, Path, Any, float] | None = None
        self.settings = settings

    # -- children --------------------------------------------------------------------------------------
    def _fork_worker(self, index: int) -> _Worker:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(r)
            code = 1
            try:
                code = _worker_main(index, self.settings, self.preloaded, w)
            except BaseException:  # noqa: B036 - a worker must never return into the supervisor's code
                logging.getLogger("movierec.server").exception("movierec worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(w)
        return _Worker(index, pid, time.monotonic(), r)

    def _fork_metrics(self) -> int:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                from movierec.server.metrics import serve_http

                s = self.settings
                _server, port = serve_http(s.metrics_host or s.host, s.metrics_port, None)
                os.write(w, f"{port}\n".encode())
                os.close(w)
                while True:
                    signal.pause()
            except BaseException:  # noqa: B036
                logging.getLogger("movierec.server").exception("movierec metrics process failed")
            finally:
                os._exit(code)
        os.close(w)
        line = _read_line(r, START_TIMEOUT_S)
        os.close(r)
        if not line.strip().isdigit():
            raise OSError(f"cannot serve metrics on {self.settings.metrics_host or self.settings.host}:"
                          f"{self.settings.metrics_port}")  # fmt: skip
        log.info("movierec metrics on http://%s:%s/metrics (summed over %d workers)",
                 self.settings.metrics_host or self.settings.host, line.strip(), self.n)  # fmt: skip
        return pid

    # -- signals ---------------------------------------------------------------------------------------
    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, _frame: Any) -> None:
        self.hup = True

    def _signal_workers(self, sig: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # -- the run ---------------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        if s.metrics:  # before anything imports prometheus_client (the value class is chosen on import)
            self.metrics_dir = tempfile.mkdtemp(prefix="movierec-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        try:
            sock = reserve_port(s.host, s.port)
        except OSError as exc:
            raise OSError(f"cannot bind {s.host}:{s.port} ({exc.strerror or exc})") from None
        http_sock = None  # --http-port: held the same way; each worker binds it with SO_REUSEPORT too
        try:
            if s.http:
                try:
                    http_sock = reserve_port(s.http_bind_host, s.http_port)
                except OSError as exc:
                    raise OSError(f"cannot bind HTTP {s.http_bind_host}:{s.http_port} ({exc.strerror or exc})") from None
                self.settings = dataclasses.replace(s, http_port=http_sock.getsockname()[1])
            return self._run(sock)
        finally:
            sock.close()
            if http_sock is not None:
                http_sock.close()
            if self.metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _run(self, sock: socket.socket) -> int:
        s = self.settings = dataclasses.replace(
            self.settings, port=sock.getsockname()[1], catalog_overlay=str(self.settings.overlay_path())
        )
        t0 = time.perf_counter()
        log.info("movierec supervisor starting %d workers (pid %d): %s", self.n, os.getpid(), s.describe())
        if not _uses_cuda(s):
            from movierec.core.device import configure_threads
            from movierec.server.model_manager import ModelManager

            # one OpenMP thread in the supervisor whatever --torch-threads says: a thread pool started before
            # fork hangs the children's first parallel region (libgomp); the workers apply the setting
            configure_threads(s.torch_threads or 1)
            manager = ModelManager(s.artifact, device=s.device)
            scorer, served = manager.load_initial()
            self.preloaded = (scorer, served, manager.current, time.perf_counter() - t0)
            log.info("movierec supervisor: model %s loaded and warmed in %.1fs (shared by the workers)",
                     scorer.info.version, time.perf_counter() - t0)  # fmt: skip
        if s.metrics:
            from movierec.server.metrics import worker_restarts_counter

            self.restarts = worker_restarts_counter()
            self.metrics_pid = self._fork_metrics()
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        for i in range(self.n):
            w = self._fork_worker(i)
            self.workers[w.pid] = w
        for w in list(self.workers.values()):  # every worker serving, or none
            line = _read_line(w.ready_fd, START_TIMEOUT_S)
            os.close(w.ready_fd)
            if line != "ready\n":
                log.error("movierec worker %d (pid %d) did not start; stopping", w.index, w.pid)
                self._shutdown()
                return 2
        log.info("movierec supervisor: all %d workers serving on %s:%d (pids %s), ready in %.1fs", self.n, s.host,
                 s.port, ",".join(str(p) for p in self.workers), time.perf_counter() - t0)  # fmt: skip
        if s.http:
            log.info("movierec supervisor: HTTP/JSON and the web page on %s://%s:%d/ (every worker)",
                     "https" if s.tls else "http", s.http_bind_host, s.http_port)  # fmt: skip
        pending: list[tuple[float, int]] = []  # (when, index): restarts waiting for their pause
        while not self.stopping:
            if self.hup:
                self.hup = False
                self._signal_workers(signal.SIGHUP)
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                now = time.monotonic()
                for when, index in [p for p in pending if p[0] <= now]:
                    pending.remove((when, index))
                    self._restart(index)
                time.sleep(0.05)
                continue
            if pid == self.metrics_pid:
                log.warning("movierec metrics process (pid %d) exited (%s); starting it again", pid, _how(status))
                self.metrics_pid = self._fork_metrics()
                continue
            dead = self.workers.pop(pid, None)
            if dead is None:
                continue
            log.warning("movierec worker %d (pid %d) exited (%s); starting it again", dead.index, pid, _how(status))
            if self.metrics_dir:
                from movierec.server.metrics import mark_dead

                mark_dead(pid)
            young = time.monotonic() - dead.started < YOUNG_S
            pending.append((time.monotonic() + (RESTART_PAUSE_S if young else 0.0), dead.index))
        log.info("movierec supervisor stopping: draining %d workers (grace %.1fs)", len(self.workers), s.grace_s)
        self._shutdown()
        log.info("movierec supervisor stopped")
        return 0

    def _restart(self, index: int) -> None:
        if self.restarts is not None:
            self.restarts.inc()
        w = self._fork_worker(index)
        self.workers[w.pid] = w
        line = _read_line(w.ready_fd, START_TIMEOUT_S)
        os.close(w.ready_fd)
        if line == "ready\n":
            log.info("movierec worker %d restarted (pid %d)", index, w.pid)
        # else: it died or hung; the loop sees it exit and tries again after a pause

    def _shutdown(self) -> None:
        self._signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_s + 30.0
        while self.workers and time.monotonic() < deadline:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
            else:
                self.workers.pop(pid, None)
        for pid in list(self.workers):
            log.warning("movierec worker pid %d did not stop in time; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if self.metrics_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.metrics_pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.metrics_pid, 0)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _read_line(fd: int, timeout: float) -> str:
    """Read up to a newline from a pipe (empty when it closes or the time is up)."""
    data = b""
    end = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _worker_main(index: int, settings: ServerSettings, preloaded: Any, ready_fd: int) -> int:
    """In a forked worker: serve until SIGTERM/SIGINT; 0 on a clean stop."""

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    fmt = f"%(asctime)s %(levelname)s %(name)s[worker {index}, pid %(process)d]: %(message)s"
    for h in logging.getLogger().handlers:
        h.setFormatter(logging.Formatter(fmt))

    def ready(_port: int) -> None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)

    from movierec.server import event_loop
    from movierec.server.app import serve

    event_loop.run(serve(settings, preloaded=preloaded, on_ready=ready), settings.event_loop)
    return 0


def run(settings: ServerSettings) -> int:
    """Serve with `settings.n_workers` worker processes (more than one); returns the exit status."""
    if sys.platform != "linux":
        raise OSError("--workers > 1 needs Linux (SO_REUSEPORT load balancing and fork)")
    return Supervisor(settings).run()
