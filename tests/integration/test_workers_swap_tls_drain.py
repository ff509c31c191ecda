"""`movierec serve --workers 2` keeps the one-worker guarantees: a hot swap reaches every worker while calls
on connections to both fail none, TLS is served by each worker, and SIGTERM lets streams in flight on both
workers finish before every process exits. Real processes; each server is killed in a finally block."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest
from test_server_workers import AUTH, Served, _channels_on_both
from waiting import wait_for, wait_for_async

from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def second_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_ratings: Any) -> Path:
    """Same data and catalog as tiny_artifact, trained differently: a new version of the same model."""
    from movierec.trainer.config import get_preset
    from movierec.trainer.pipeline import run_training

    train, test, catalog = tiny_ratings
    out = tmp_path_factory.mktemp("v2") / "tiny2"
    run_training(
        train, test, catalog, get_preset("classic"), out,
        overrides={"train": {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu"}},
        dataset="synthetic-tiny", progress=False,
    )  # fmt: skip
    return out


def _publish(src: Path, versions: Path, name: str) -> None:
    tmp = versions / f".{name}.incoming"
    shutil.copytree(src, tmp)
    os.replace(tmp, versions / name)
    os.utime(versions / name / "manifest.json")  # newest


@contextlib.contextmanager
def _served(artifact: Path, tmp: Path, *extra: str) -> Iterator[Served]:
    s = Served(artifact, tmp, extra)
    try:
        yield s
    finally:
        s.kill()


async def _close(by_worker: dict[int, list[tuple[grpc.aio.Channel, Any]]]) -> None:
    for chans in by_worker.values():
        for ch, _ in chans:
            await ch.close()


def test_hot_swap_reaches_every_worker_and_fails_no_call(
    tiny_artifact: Path, second_artifact: Path, tmp_path: Path
) -> None:
    versions = tmp_path / "models"
    versions.mkdir()
    _publish(tiny_artifact, versions, "v1")
    users = [int(u) for u in np.load(tiny_artifact / "users.npy")[:10]]
    with _served(versions, tmp_path, "--watch-interval-s", "0.5") as served:

        async def scenario() -> tuple[dict[int, set[str]], list[str], int]:
            by_worker = await _channels_on_both(served)
            seen: dict[int, set[str]] = {pid: set() for pid in by_worker}
            errors: list[str] = []
            done = asyncio.Event()
            calls = 0

            async def caller(pid: int, stub: Any, n: int) -> None:
                nonlocal calls
                while not done.is_set():
                    try:
                        r = await stub.Recommend(
                            pb.RecommendRequest(user_ids=[users[n % len(users)]], k=3), metadata=AUTH, timeout=60
                        )
                        seen[pid].add(r.model_version)
                    except grpc.aio.AioRpcError as exc:
                        errors.append(f"{exc.code().name}: {exc.details()}")
                    calls += 1
                    n += 1

            tasks = [asyncio.create_task(caller(pid, stub, i)) for pid, chans in by_worker.items()
                     for i, (_, stub) in enumerate(chans)]  # fmt: skip
            await wait_for_async(lambda: _all_answered(seen), "both workers answer before the swap")
            first = {v for vs in seen.values() for v in vs}
            await asyncio.to_thread(_publish, second_artifact, versions, "v2")
            await wait_for_async(lambda: _all_swapped(seen, first), "every worker serves the new version")
            done.set()
            await asyncio.gather(*tasks)
            await _close(by_worker)
            return seen, errors, calls

        seen, errors, calls = asyncio.run(scenario())
        assert errors == [], errors[:5]
        assert calls > 0 and all(len(versions_seen) == 2 for versions_seen in seen.values()), seen
        wait_for(lambda: sum("movierec model swapped" in ln for ln in served.lines) >= 2,
                 "both workers logged the swap")  # fmt: skip


async def _all_answered(seen: dict[int, set[str]]) -> bool:
    return all(seen.values())  # wait_for_async yields to the calling tasks between polls


async def _all_swapped(seen: dict[int, set[str]], first: set[str]) -> bool:
    return all(vs - first for vs in seen.values())


def test_tls_on_both_workers(tiny_artifact: Path, tmp_path: Path) -> None:
    from test_security import _certs

    (tmp_path / "pki").mkdir()
    certs = _certs(tmp_path / "pki")
    user = int(np.load(tiny_artifact / "users.npy")[0])
    tls = ("--tls-cert", str(certs["server.pem"]), "--tls-key", str(certs["server.key"]))
    with _served(tiny_artifact, tmp_path, *tls) as served:

        async def scenario() -> list[str]:
            creds = grpc.ssl_channel_credentials(root_certificates=certs["ca.pem"].read_bytes())
            by_worker = await _channels_on_both(served, creds, per_worker=1)
            answers = [
                (await stub.Recommend(pb.RecommendRequest(user_ids=[user], k=2), metadata=AUTH)).model_version
                for chans in by_worker.values() for _, stub in chans
            ]  # fmt: skip
            await _close(by_worker)
            async with grpc.aio.insecure_channel(served.target) as plain:  # plain text cannot talk to TLS
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await pb_grpc.RecommenderServiceStub(plain).GetModelInfo(
                        pb.GetModelInfoRequest(), metadata=AUTH, timeout=5
                    )
                assert exc.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            return answers

        answers = asyncio.run(scenario())
        assert len(answers) >= 2 and all(answers)
        assert sum("(TLS;" in line for line in served.lines if "serving on" in line) >= 2  # each worker says so


def test_sigterm_lets_streams_in_flight_on_both_workers_finish(tiny_artifact: Path, tmp_path: Path) -> None:
    users = [int(u) for u in np.load(tiny_artifact / "users.npy")[:10]]
    with _served(tiny_artifact, tmp_path, "--grace-s", "60") as served:

        def request(i: int) -> pb.StreamRecommendRequest:
            return pb.StreamRecommendRequest(
                request_id=f"r{i}", recommend=pb.RecommendRequest(user_ids=[users[i % len(users)]], k=3)
            )

        async def scenario() -> dict[int, list[str]]:
            by_worker = await _channels_on_both(served, per_worker=1)
            streams = {pid: chans[0][1].StreamRecommend(metadata=AUTH) for pid, chans in by_worker.items()}
            answered: dict[int, list[str]] = {pid: [] for pid in streams}
            for pid, call in streams.items():  # each stream is open and answering on its worker
                for i in range(3):
                    await call.write(request(i))
                    answered[pid].append((await call.read()).request_id)
            os.kill(served.proc.pid, signal.SIGTERM)
            async def draining() -> bool:  # both workers are draining
                return sum("server stopping" in ln for ln in served.lines) >= 2

            await wait_for_async(draining, "both workers say they are stopping")
            for pid, call in streams.items():  # the streams in flight keep being served during the grace
                for i in range(3, 8):
                    await call.write(request(i))
                    answered[pid].append((await call.read()).request_id)
                await call.done_writing()
                assert await call.read() == grpc.aio.EOF
                assert await call.code() == grpc.StatusCode.OK
            await _close(by_worker)
            return answered

        answered = asyncio.run(scenario())
        assert all(ids == [f"r{i}" for i in range(8)] for ids in answered.values()), answered
        assert served.proc.wait(120) == 0
        assert any("supervisor stopped" in line for line in served.lines)


def test_score_all_over_connections_to_both_workers(tiny_artifact: Path, tmp_path: Path) -> None:
    """Bulk shards pulled over separate connections to a 2-worker server: every user once, in order, the same
    lists as one stream (which connections land on which worker is the kernel's choice)."""
    import pyarrow.parquet as pq
    from test_server_workers import TOKEN

    from movierec.client import Client
    from movierec.client._bulk import spread_score_all

    with _served(tiny_artifact, tmp_path) as served:
        opts = [("grpc.use_local_subchannel_pool", 1)]
        pool = [Client(served.target, token=TOKEN, options=opts) for _ in range(4)]
        try:
            res = spread_score_all(pool[0], 5, tmp_path / "spread.parquet", shards=16, chunk_users=8,
                                   progress=False, connections=pool)  # fmt: skip
            one = pool[0].score_all(5, out=tmp_path / "one.parquet", progress=False)
        finally:
            for c in pool:
                c.close()
    spread, single = pq.read_table(tmp_path / "spread.parquet"), pq.read_table(tmp_path / "one.parquet")
    assert res.users == one.users == len(np.load(tiny_artifact / "users.npy"))
    assert spread.column("user_id").to_pylist() == single.column("user_id").to_pylist()
    assert spread.column("movie_id").to_pylist() == single.column("movie_id").to_pylist()
