"""`movierec serve` as a real process: RSS stays flat under 10,000 bad requests; SIGTERM drains in-flight work
(a bulk stream included) and a bulk client resumes from its cursor on the restarted server with no user lost
or duplicated; SIGHUP swaps in a new version from a versions folder.

`MOVIEREC_BAD_REQUESTS` (default 10000) sets the number of bad requests (`make soak`: 100000).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import psutil

from movierec.client import Client, MovieRecError
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types

BAD_REQUESTS = int(os.environ.get("MOVIEREC_BAD_REQUESTS", "10000"))


def start(artifact: Path, *args: str) -> tuple[subprocess.Popen[str], int, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(artifact), "--port", "0",
         "--device", "cpu", *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    end = time.monotonic() + 120
    while time.monotonic() < end:
        line = proc.stderr.readline()
        lines.append(line)
        if not line and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {''.join(lines)}")
        m = re.search(r"serving on \S+:(\d+)", line)
        if m:
            return proc, int(m.group(1)), lines
    proc.kill()
    raise AssertionError("server did not come up")


async def bad_requests(target: str, n: int, users: list[int], movies: list[int]) -> dict[str, int]:
    ch = grpc.aio.insecure_channel(target)
    stub = pb_grpc.RecommenderServiceStub(ch)
    raw = ch.unary_unary("/movierec.v1.RecommenderService/Recommend")
    nan = types.RatingVector(movie_ids=[movies[0]], ratings=[float("nan")])
    dup = types.RatingVector(movie_ids=[movies[0], movies[0]], ratings=[3.0, 4.0])
    makers = [
        lambda i: stub.Recommend(pb.RecommendRequest(user_ids=[-1 - i], k=3)),
        lambda i: stub.Recommend(pb.RecommendRequest(user_ids=[users[0]], k=0)),
        lambda i: stub.Recommend(pb.RecommendRequest(user_ids=[users[0]], k=2**31 - 1)),
        lambda i: stub.RecommendForRatings(pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery(ratings=nan)], k=2)),
        lambda i: stub.RecommendForRatings(pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery(ratings=dup)], k=2)),
        lambda i: stub.GetMovies(pb.GetMoviesRequest(movie_ids=[10**12 + i])),
        lambda i: raw(b"\xff\xff\xff" + i.to_bytes(4, "little")),
    ]
    codes: dict[str, int] = {}
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            try:
                await makers[i % len(makers)](i)
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.aio.AioRpcError as err:
                codes[err.code().name] = codes.get(err.code().name, 0) + 1

    await asyncio.gather(*(one(i) for i in range(n)))
    await ch.close()
    return codes


def test_rss_flat_sigterm_drains_bulk_resumes_and_sighup_swaps(
    tiny_artifact: Path, tmp_path: Path, scorer: Any, tiny_ratings: Any
) -> None:
    versions = tmp_path / "models"
    versions.mkdir()
    shutil.copytree(tiny_artifact, versions / "v1")
    users = [int(u) for u in scorer.users.raw]
    movies = [int(m) for m in scorer.items.raw]

    proc, port, lines = start(versions, "--watch-interval-s", "0", "--grace-s", "10")
    target = f"127.0.0.1:{port}"
    try:
        assert "plain text (loopback only)" in lines[-1] and "auth off" in lines[-1], lines[-1]
        # -- 10,000 bad requests: memory stays flat --------------------------------------------------------
        ps = psutil.Process(proc.pid)
        asyncio.run(bad_requests(target, 2000, users, movies))  # warm-up: allocator pools, caches
        rss0 = ps.memory_info().rss
        t0 = time.perf_counter()
        codes = asyncio.run(bad_requests(target, BAD_REQUESTS, users, movies))
        secs = time.perf_counter() - t0
        rss1 = ps.memory_info().rss
        print(
            f"\nRSS: {BAD_REQUESTS} bad requests in {secs:.1f}s: server RSS {rss0 / 2**20:.1f} MiB -> "
            f"{rss1 / 2**20:.1f} MiB ({(rss1 - rss0) / 2**20:+.1f} MiB); statuses {codes}"
        )
        assert set(codes) <= {"INVALID_ARGUMENT", "NOT_FOUND"}, codes
        assert sum(codes.values()) == BAD_REQUESTS
        assert rss1 - rss0 < 20 * 2**20

        # -- SIGTERM: in-flight bulk stream finishes, new calls refused ------------------------------------
        with Client(target, timeout=10) as c:
            assert c.recommend(users[0], k=2)[0].user_id == users[0]
            drained = c.iter_score_all(5, chunk_users=10)
            abandoned = c.iter_score_all(5, chunk_users=10)
            got = [next(abandoned) for _ in range(3)]  # a client that will crash after 3 chunks
            first = next(drained)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            try:
                health = c.health(timeout=2)
            except MovieRecError as err:
                health = err.code.name
            assert health in ("NOT_SERVING", "UNAVAILABLE"), health
            try:
                c.recommend(users[0], k=2, timeout=2)
                refused = False
            except MovieRecError as err:
                refused = err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            assert refused
            rest = list(drained)  # within the grace period the stream runs to its end
            assert first.users_done + sum(len(ch) for ch in rest) == len(users)
            cursor = got[-1].cursor
            abandoned.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()

    # -- restart; the crashed bulk client resumes from its cursor -------------------------------------------
    proc, port, _ = start(versions, "--watch-interval-s", "0")
    target = f"127.0.0.1:{port}"
    try:
        with Client(target, timeout=10) as c:
            resumed = list(c.iter_score_all(5, chunk_users=10, resume_from=cursor))
            seen = np.concatenate([ch.user_ids for ch in got] + [ch.user_ids for ch in resumed])
            assert len(seen) == len(users) and sorted(seen.tolist()) == sorted(users)  # none lost or twice
            v1 = c.model_info().version

            # -- SIGHUP: a new version in the versions folder is swapped in --------------------------------
            from movierec.trainer.config import get_preset
            from movierec.trainer.pipeline import run_training

            train, test, catalog = tiny_ratings
            run_training(
                train, test, catalog, get_preset("classic"), versions / "v2",
                overrides={"train": {"epochs": 1, "batch_size": 16, "device": "cpu"}},
                dataset="synthetic-tiny", progress=False,
            )  # fmt: skip
            proc.send_signal(signal.SIGHUP)
            end = time.monotonic() + 60
            while c.model_info().version == v1 and time.monotonic() < end:
                time.sleep(0.1)
            v2 = c.model_info().version
            assert v2 != v1 and c.recommend(users[0], k=2).model_version == v2
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert f"model swapped: {v1} -> {v2}" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
