"""Integration fixtures: a real grpc.aio server (on a free port, in a background thread) + the SDK.

The server runs in-process so tests can read the batcher's counters; `SlowScorer` wraps the real scorer to
make model steps slow on purpose (deadlines, queue limits, graceful shutdown).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
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

    def predict(self, inputs: Any, targets: Any, **kw: Any) -> Any:
        time.sleep(self.delay)
        self.rows_scored.append(inputs.n_rows)
        return self._inner.predict(inputs, targets, **kw)


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

    def predict(self, inputs: Any, targets: Any, **kw: Any) -> Any:
        self._hold(inputs.n_rows)
        return self._inner.predict(inputs, targets, **kw)


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


def build_cold_artifact(
    train: Any, test: Any, catalog: Any, profiles: Any, out: Path, *, seed: int = 0, epochs: int = 3
) -> Path:
    """A quick artifact with side-information models, for tests that need several versions (hot swaps): the
    classic preset trained on `train`, the users' `profiles`, and cold-start models ("cold-rating" /
    "cold-ranking", hybrid families) with seeded random weights over the feature vocabulary of the profiles
    and the catalog: scores that depend on the profile and on movie metadata, without training them (the
    trainer's cold-start fit is tested with `tiny_cold_artifact`)."""
    import torch

    from movierec.core.artifact import ModelEntry, load_artifact, save_artifact
    from movierec.core.config import ModelConfig
    from movierec.core.features import FeatureSchema, MovieTable, Profiles
    from movierec.core.models import build_model
    from movierec.trainer.config import get_preset
    from movierec.trainer.pipeline import run_training

    stage = out.parent / f".{out.name}.classic"
    run_training(
        train, test, catalog, get_preset("classic"), stage,
        overrides={"train": {"epochs": epochs, "batch_size": 16, "lr": 0.01, "device": "cpu", "seed": seed}},
        dataset="synthetic-tiny-cold", progress=False,
    )  # fmt: skip
    art = load_artifact(stage)
    profiles = profiles[profiles["user"].isin(art.users.raw)].reset_index(drop=True)
    movies = MovieTable.from_frame(art.catalog.set_index("item").reindex(art.items.raw).reset_index())
    features = FeatureSchema.build(Profiles.from_frame(profiles), movies, min_word_count=1)
    gen = torch.Generator().manual_seed(seed)
    for role, kind in (("cold-rating", "hybrid-rating"), ("cold-ranking", "hybrid-ranking")):
        extra = {"n_user_features": features.n_user_features, "n_item_features": features.n_item_features, "dim": 16}
        config = ModelConfig(kind=kind, n_items=len(art.items), hidden=(16,), activation="selu", extra=extra)
        state = build_model(config).state_dict()
        for name, value in state.items():
            if name == "item_features":
                state[name] = torch.from_numpy(features.encode_items(movies))
            elif name != "movie_keep":
                state[name] = torch.randn(value.shape, generator=gen) * 0.5
        art.models[role] = ModelEntry(config, state)
    art.profiles = profiles
    art.features = features
    save_artifact(art, out)
    shutil.rmtree(stage, ignore_errors=True)
    return out


@pytest.fixture()
def server_thread() -> type[ServerThread]:
    """The ServerThread class, for tests that stop and restart servers themselves (close() each one)."""
    return ServerThread


@pytest.fixture(scope="session")
def build_cold() -> Any:
    """`build_cold_artifact`, for tests that write artifacts of their own."""
    return build_cold_artifact


@pytest.fixture(scope="session")
def cold_scorer(tiny_cold_artifact: Path) -> Any:
    """The scorer of the shared cold-start artifact (tests/conftest.py: tiny_cold_artifact)."""
    from movierec.core.scoring import Scorer

    s = Scorer.load(tiny_cold_artifact, device="cpu")
    s.warmup()
    return s


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
