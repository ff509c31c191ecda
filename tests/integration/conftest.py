"""Integration fixtures: a real grpc.aio server (on a free port, in a background thread) + the SDK.

The server runs in-process so tests can read the batcher's counters; `SlowScorer` wraps the real scorer to
make model steps slow on purpose (deadlines, queue limits, graceful shutdown).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from movierec.client import Client


class SlowScorer:
    """Delegates to a real scorer; sleeps `delay` seconds before each topk/predict and records the rows scored."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner = inner
        self.delay = delay
        self.rows_scored: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def topk(self, inputs: Any, k: int, **kw: Any) -> Any:
        time.sleep(self.delay)
        self.rows_scored.append(inputs.n_rows)
        return self._inner.topk(inputs, k, **kw)

    def predict(self, inputs: Any, targets: Any) -> Any:
        time.sleep(self.delay)
        self.rows_scored.append(inputs.n_rows)
        return self._inner.predict(inputs, targets)


class GatedScorer:
    """Delegates to a real scorer; every topk/predict sets `entered` and then blocks until `release` is set
    (at most `WAIT_S`), so a test can hold the model step busy exactly as long as its scenario needs,
    whatever the machine's load. Records the rows scored."""

    WAIT_S = 120.0

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.rows_scored: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _hold(self, n_rows: int) -> None:
        self.entered.set()
        self.release.wait(self.WAIT_S)
        self.rows_scored.append(n_rows)

    def topk(self, inputs: Any, k: int, **kw: Any) -> Any:
        self._hold(inputs.n_rows)
        return self._inner.topk(inputs, k, **kw)

    def predict(self, inputs: Any, targets: Any) -> Any:
        self._hold(inputs.n_rows)
        return self._inner.predict(inputs, targets)


class ServerThread:
    """Runs RecommenderServer on its own event loop in a daemon thread."""

    def __init__(self, scorer: Any, **settings: Any) -> None:
        from movierec.server.app import RecommenderServer
        from movierec.server.config import ServerSettings

        self.settings = ServerSettings(**{"host": "127.0.0.1", "port": 0, "artifact": Path("."), **settings})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = RecommenderServer(scorer, self.settings)
        self.port: int = self.run(self.server.start()).result(30)
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    @property
    def stats(self) -> Any:
        # read a snapshot on the loop thread
        return self.run(_snapshot(self.server.batcher.stats)).result(5)

    def stop(self, grace: float = 0.0) -> Future[Any]:
        return self.run(self.server.stop(grace))

    def close(self) -> None:
        self.stop(0).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _snapshot(stats: Any) -> Any:
    return dataclasses.replace(stats, batch_sizes=list(stats.batch_sizes))


@pytest.fixture(scope="session")
def scorer(tiny_artifact: Path) -> Any:
    from movierec.core.scoring import Scorer

    s = Scorer.load(tiny_artifact, device="cpu")
    s.warmup()
    return s


@pytest.fixture(scope="session")
def server(scorer: Any) -> Iterator[ServerThread]:
    srv = ServerThread(scorer, max_users_per_call=50)
    yield srv
    srv.close()


@pytest.fixture()
def client(server: ServerThread) -> Iterator[Client]:
    with Client(server.target, timeout=10) as c:
        yield c


@pytest.fixture()
def make_server(scorer: Any) -> Iterator[Any]:
    """Factory for servers with special settings (closed after the test)."""
    made: list[ServerThread] = []

    def make(inner: Any = None, **settings: Any) -> ServerThread:
        srv = ServerThread(inner if inner is not None else scorer, **settings)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


@pytest.fixture()
def slow(scorer: Any) -> Any:
    """`slow(delay)` -> a SlowScorer around the session scorer."""
    return lambda delay: SlowScorer(scorer, delay)


@pytest.fixture()
def gated(scorer: Any) -> Iterator[GatedScorer]:
    """A GatedScorer around the session scorer (released after the test, so no server thread stays held)."""
    g = GatedScorer(scorer)
    yield g
    g.release.set()
