"""`movierec serve --workers 2` as real processes: metrics summed over the workers (counts per status code
equal what was sent over connections that reach both workers, tokens enforced by each), an upsert made on
one worker is served by the other, a killed worker is restarted and logged while the other serves on, and
SIGTERM stops every process. Each test's server is killed (its whole process group) in a finally block."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psutil
import pytest
from scrape import handled, scrape, value
from serve_process import ServeProcess
from waiting import wait_for, wait_for_async

from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types

TOKEN = "workers-test-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


class Served(ServeProcess):
    """A `movierec serve --workers 2` process group (tokens, metrics); stderr collected by a thread."""

    def __init__(self, artifact: Path, tmp: Path, extra: Sequence[str] = ()) -> None:
        tokens = tmp / "tokens.txt"
        tokens.write_text(TOKEN + "\n")
        super().__init__(
            ["--artifact", str(artifact), "--port", "0", "--device", "cpu", "--workers", "2", "--metrics-port", "0",
             "--auth-token-file", str(tokens), "--grace-s", "5", *extra],
            r"all 2 workers serving on \S+:(\d+)", "the supervisor says every worker serves",
        )  # fmt: skip
        self.port = int(self.find(r"all 2 workers serving on \S+:(\d+)") or 0)
        metrics_at = self.find(r"metrics on http://(\S+)/metrics")
        self.metrics_url = f"http://{metrics_at}/metrics"
        self.target = f"127.0.0.1:{self.port}"

    def workers(self) -> list[psutil.Process]:
        """The worker processes (children serving the port; not the metrics process)."""
        return self.listeners(self.port)


@pytest.fixture()
def served(tiny_artifact: Path, tmp_path: Path) -> Iterator[Served]:
    artifact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artifact)
    s = Served(artifact, tmp_path)
    try:
        yield s
    finally:
        s.kill()


def _users(artifact_users: Any) -> list[int]:
    return [int(u) for u in artifact_users[:10]]


async def _channels_on_both(
    s: Served, credentials: grpc.ChannelCredentials | None = None, per_worker: int = 2
) -> dict[int, list[tuple[grpc.aio.Channel, Any]]]:
    """Open separate connections (no shared subchannels) until both workers hold at least `per_worker`."""
    by_worker: dict[int, list[tuple[grpc.aio.Channel, Any]]] = {}
    opts = [("grpc.use_local_subchannel_pool", 1)]
    for _ in range(64):
        ch = (grpc.aio.secure_channel(s.target, credentials, options=opts) if credentials is not None
              else grpc.aio.insecure_channel(s.target, options=opts))  # fmt: skip
        stub = pb_grpc.RecommenderServiceStub(ch)
        await stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=AUTH)
        pid = await asyncio.to_thread(_newest_pid, s, by_worker)
        by_worker.setdefault(pid, []).append((ch, stub))
        if len(by_worker) == 2 and all(len(v) >= per_worker for v in by_worker.values()):
            return by_worker
    raise AssertionError(f"64 connections all went to {list(by_worker)}")


def _newest_pid(s: Served, known: dict[int, list[Any]]) -> int:
    """The worker of the connection opened last: the one whose count of our connections grew."""
    ours = sum(len(v) for v in known.values()) + 1
    counts: dict[int, int] = {}

    def count() -> bool:
        counts.clear()
        for w in s.workers():
            with contextlib.suppress(psutil.NoSuchProcess):
                counts[int(w.pid)] = sum(
                    1 for c in w.net_connections("tcp")
                    if c.laddr.port == s.port and c.raddr and c.status == psutil.CONN_ESTABLISHED
                )  # fmt: skip
        return sum(counts.values()) >= ours

    wait_for(count, "the new connection seen by a worker")
    for pid, n in counts.items():
        if n > len(known.get(pid, [])):
            return pid
    raise AssertionError(f"no worker gained a connection: {counts}")


def test_two_workers_metrics_tokens_upserts(served: Served, tiny_artifact: Path) -> None:
    import numpy as np

    users = _users(np.load(tiny_artifact / "users.npy"))
    before = scrape(served.metrics_url)

    async def scenario() -> tuple[dict[str, int], set[int]]:
        by_worker = await _channels_on_both(served)
        stubs = [stub for chans in by_worker.values() for _, stub in chans]
        seen: dict[str, int] = {}
        calls = (
            [stubs[i % len(stubs)].Recommend(pb.RecommendRequest(user_ids=[users[i % len(users)]], k=3),
                                             metadata=AUTH) for i in range(40)]
            + [stubs[i % len(stubs)].Recommend(pb.RecommendRequest(user_ids=[-1 - i], k=3), metadata=AUTH)
               for i in range(6)]
            + [stubs[i % len(stubs)].Recommend(pb.RecommendRequest(user_ids=[users[0]], k=3)) for i in range(4)]
        )  # fmt: skip
        for r in await asyncio.gather(*calls, return_exceptions=True):
            code = r.code().name if isinstance(r, grpc.aio.AioRpcError) else "OK"
            seen[code] = seen.get(code, 0) + 1
        # an upsert on one worker is served by the other (it re-applies the overlay file)
        (a, b) = list(by_worker)
        movie = types.Movie(movie_id=900_001, title="Added On One Worker (2024)", year=2024, genres=["Drama"])
        up = await by_worker[a][0][1].UpsertMovies(pb.UpsertMoviesRequest(movies=[movie]), metadata=AUTH)
        assert up.added == 1
        other = by_worker[b][0][1]
        titles: dict[int, str] = {}

        async def served_by_other() -> bool:  # the other worker re-reads the overlay file every 0.25 s
            got = await other.GetMovies(pb.GetMoviesRequest(), metadata=AUTH)
            titles.update({m.movie_id: m.title for m in got.movies})
            return 900_001 in titles

        await wait_for_async(served_by_other, "the other worker serves the added movie")
        assert titles[900_001] == "Added On One Worker (2024)"
        # an upsert on the second worker keeps the first one's movie (the file is read, merged, written)
        movie2 = types.Movie(movie_id=900_002, title="Added On The Other (2024)", year=2024, genres=["Comedy"])
        await other.UpsertMovies(pb.UpsertMoviesRequest(movies=[movie2]), metadata=AUTH)
        async def both_served_by_first() -> bool:
            got = await by_worker[a][0][1].GetMovies(pb.GetMoviesRequest(movie_ids=[]), metadata=AUTH)
            return {900_001, 900_002} <= {m.movie_id for m in got.movies}

        await wait_for_async(both_served_by_first, "the first worker serves both added movies")
        for chans in by_worker.values():
            for ch, _ in chans:
                await ch.close()
        return seen, set(by_worker)

    seen, pids = asyncio.run(scenario())
    assert seen == {"OK": 40, "NOT_FOUND": 6, "UNAUTHENTICATED": 4}
    assert len(pids) == 2
    wait_for(lambda: sum(handled(scrape(served.metrics_url), "Recommend").values()) >= 50,
             "every call counted in the summed metrics")  # fmt: skip
    after = scrape(served.metrics_url)
    delta = {c: int(n - handled(before, "Recommend").get(c, 0)) for c, n in handled(after, "Recommend").items()}
    assert {c: n for c, n in delta.items() if n} == seen
    assert value(after, "movierec_batch_size_users_sum") == 40
    assert value(after, "grpc_server_handled_total", grpc_method="UpsertMovies", grpc_code="OK") == 2
    assert sum(1 for line in served.lines if "re-applied" in line) >= 2


def test_a_killed_worker_is_restarted_and_sigterm_stops_all(served: Served) -> None:
    wait_for(lambda: len(served.workers()) == 2, "two workers listening")
    victim = served.workers()[0]
    victim.send_signal(signal.SIGKILL)
    wait_for(lambda: served.find(r"movierec worker \d+ restarted \(pid (\d+)\)") is not None, "the restart logged")
    assert any(f"(pid {victim.pid}) exited (killed by SIGKILL)" in line for line in served.lines)
    wait_for(lambda: len(served.workers()) == 2 and victim.pid not in {w.pid for w in served.workers()},
             "two workers again")  # fmt: skip
    wait_for(lambda: value(scrape(served.metrics_url), "movierec_worker_restarts_total") == 1, "restart counted")

    async def calls() -> None:
        for _ in range(8):
            async with grpc.aio.insecure_channel(served.target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                await pb_grpc.RecommenderServiceStub(ch).GetModelInfo(pb.GetModelInfoRequest(), metadata=AUTH)

    asyncio.run(calls())
    children = [p.pid for p in psutil.Process(served.proc.pid).children()]
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(120) == 0
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                             for p in children), "every worker gone")  # fmt: skip
    assert any("supervisor stopped" in line for line in served.lines)
