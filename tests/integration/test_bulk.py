"""ScoreAll end to end: a real grpc.aio server, the SDK's iterator and writers, the CLI."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from waiting import wait_for

from movierec.client import AsyncClient, Client, MovieRecError
from movierec.client import _bulk as bulk_sdk
from movierec.v1 import bulk_pb2

K = 10


def in_process(scorer: Any, k: int = K) -> pd.DataFrame:
    """The reference: the same Scorer called directly, in long format."""
    n = len(scorer.users)
    items, scores = scorer.recommend_users(np.arange(n), k)
    valid = items >= 0
    return pd.DataFrame(
        {
            "user_id": np.repeat(scorer.users.raw, k).reshape(n, k)[valid],
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), (n, 1))[valid],
            "movie_id": scorer.items.raw[np.maximum(items, 0)][valid],
            "score": scores[valid],
        }
    )


def read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path) if path.suffix == ".csv" else pq.read_table(path).to_pandas()
    return df.astype({"user_id": np.int64, "rank": np.int32, "movie_id": np.int64, "score": np.float32})


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a.sort_values(["user_id", "rank"]).reset_index(drop=True)
    b = b.sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["user_id", "rank", "movie_id"]], b[["user_id", "rank", "movie_id"]])
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-5)


def test_chunks_match_in_process_scoring(client: Client, scorer: Any) -> None:
    chunks = list(client.iter_score_all(K, chunk_users=32))
    n = len(scorer.users)
    assert [len(c) for c in chunks] == [32, 32, 32, n - 96]
    assert [c.users_done for c in chunks] == [32, 64, 96, n] and {c.users_total for c in chunks} == {n}
    user_ids = np.concatenate([c.user_ids for c in chunks])
    np.testing.assert_array_equal(user_ids, scorer.users.raw)
    movie_ids = np.concatenate([c.movie_ids for c in chunks])
    scores = np.concatenate([c.scores for c in chunks])
    items, ref_scores = scorer.recommend_users(np.arange(n), K)
    np.testing.assert_array_equal(movie_ids, np.where(items >= 0, scorer.items.raw[np.maximum(items, 0)], -1))
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    # already-rated movies never appear, as in Recommend
    rated = scorer.history.rows(np.arange(n))
    rated_pairs = set(
        zip(np.repeat(scorer.users.raw, rated.row_lengths()), scorer.items.raw[rated.indices], strict=True)
    )
    assert not rated_pairs & set(zip(np.repeat(user_ids, K), movie_ids.ravel(), strict=True))
    # the same lists as the unary Recommend
    rec = client.recommend(user_ids[:5].tolist(), k=K)
    for r in range(5):
        np.testing.assert_array_equal(rec[r].movie_ids, movie_ids[r])
    assert_same(pd.concat([c.to_pandas() for c in chunks]), in_process(scorer))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_union_of_shards_equals_unsharded(client: Client, scorer: Any, tmp_path: Path, suffix: str) -> None:
    whole = client.score_all(K, out=tmp_path / f"all{suffix}", chunk_users=16, progress=False)
    assert whole.users == whole.users_total == len(scorer.users) and whole.resumed_users == 0
    full = read(tmp_path / f"all{suffix}")
    assert_same(full, in_process(scorer))
    parts = []
    for i in range(3):
        res = client.score_all(
            K, out=tmp_path / f"s{i}{suffix}", shard=f"{i}/3", chunk_users=16, progress=False
        )
        parts.append(read(res.out))
    assert sum(p["user_id"].nunique() for p in parts) == len(scorer.users)  # disjoint
    assert_same(pd.concat(parts), full)
    raw = scorer.users.raw
    lo, hi = int(raw[10]), int(raw[50])
    ranged = read(client.score_all(K, out=tmp_path / f"r{suffix}", user_range=(lo, hi), progress=False).out)
    assert_same(ranged, full[(full.user_id >= lo) & (full.user_id < hi)])
    if suffix == ".parquet":  # one row group per chunk, model version in the metadata
        f = pq.ParquetFile(tmp_path / "all.parquet")
        assert f.metadata.num_row_groups == -(-len(scorer.users) // 16)
        assert f.schema_arrow.metadata[b"movierec.model_version"].decode() == whole.model_version
    assert not list(tmp_path.glob("*.progress.json")) and not list(tmp_path.glob("*.parts"))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_interrupted_run_resumes_exactly(
    client: Client, scorer: Any, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / f"recs{suffix}"
    calls = {"n": 0}
    real_write = bulk_sdk.BulkWriter.write

    def crashing_write(self: bulk_sdk.BulkWriter, chunk: bulk_sdk.BulkChunk) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            # a crash in the middle of writing chunk 4: its data is half there, the progress file is not
            if self.fmt == "parquet":
                self.parts.mkdir(exist_ok=True)
                self._part(self.chunks).write_bytes(b"PAR1 half a file")
            else:
                assert self._csv is not None
                self._csv.write(b"999999,1,2,0.5\n9999")
                self._csv.flush()
            raise KeyboardInterrupt
        real_write(self, chunk)

    monkeypatch.setattr(bulk_sdk.BulkWriter, "write", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        client.score_all(K, out=out, shard="1/2", chunk_users=8, progress=False)
    assert not out.exists()  # never a partial file under the final name
    with pytest.raises(ValueError, match="resume with the same k"):
        client.score_all(K + 1, out=out, shard="1/2", chunk_users=8, resume=True, progress=False)
    monkeypatch.setattr(bulk_sdk.BulkWriter, "write", real_write)
    res = client.score_all(K, out=out, shard="1/2", chunk_users=8, resume=True, progress=False)
    assert res.resumed_users == 24 and res.resumed_users + res.users == res.users_total
    ref = client.score_all(K, out=tmp_path / f"ref{suffix}", shard="1/2", chunk_users=8, progress=False)
    resumed, uninterrupted = read(out), read(ref.out)
    assert not resumed.duplicated(["user_id", "rank"]).any()
    assert_same(resumed, uninterrupted)
    # resuming a finished run does nothing
    again = client.score_all(K, out=out, shard="1/2", chunk_users=8, resume=True, progress=False)
    assert again.users == 0 and read(out).shape == resumed.shape


def test_resume_refuses_other_model_or_run(client: Client) -> None:
    first = next(iter(client.iter_score_all(K, chunk_users=16)))
    cursor = bulk_pb2.ScoreAllCursor.FromString(first.cursor)
    cursor.model_version = "another-model"
    with pytest.raises(MovieRecError) as err:
        list(client.iter_score_all(K, chunk_users=16, resume_from=cursor.SerializeToString()))
    assert err.value.code.name == "FAILED_PRECONDITION" and "another-model" in err.value.details
    with pytest.raises(MovieRecError) as err:
        list(client.iter_score_all(K + 1, chunk_users=16, resume_from=first.cursor))
    assert err.value.code.name == "INVALID_ARGUMENT" and "resume_from" in err.value.details
    rest = list(client.iter_score_all(K, chunk_users=16, resume_from=first.cursor))
    assert rest[0].users_done == 32 and rest[0].user_ids[0] > first.user_ids[-1]
    for bad, field in (({"shard": "3/3"}, "shard.index"), ({"shard": (0, 0)}, "shard.count")):
        with pytest.raises(MovieRecError) as err:
            list(client.iter_score_all(K, **bad))
        assert err.value.code.name == "INVALID_ARGUMENT" and field in err.value.details
    with pytest.raises(MovieRecError, match="k: 0"):
        list(client.iter_score_all(0))


class HoldAfterFirstChunk:
    """Delegates to a real scorer; the first chunk goes through, every later one waits for `release`."""

    WAIT_S = 120.0

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.rows_scored: list[int] = []
        self.release = threading.Event()
        self.idle = threading.Event()  # set whenever no topk is running
        self.idle.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def topk(self, inputs: Any, k: int, **kw: Any) -> Any:
        self.idle.clear()
        try:
            if self.rows_scored:
                self.release.wait(self.WAIT_S)
            out = self._inner.topk(inputs, k, **kw)
            self.rows_scored.append(inputs.n_rows)
            return out
        finally:
            self.idle.set()


def test_cancel_stops_work_within_a_chunk(make_server: Any, scorer: Any) -> None:
    inner = HoldAfterFirstChunk(scorer)
    srv = make_server(inner)
    try:
        with Client(srv.target) as c:
            it = c.iter_score_all(K, chunk_users=4)  # 30 chunks; the second waits for the release
            next(it)
            it.close()  # cancels the call
        wait_for(lambda: srv.server.guard.active_streams == 0, "the server ended the cancelled stream")
    finally:
        inner.release.set()  # the chunk being scored finishes (and is dropped); none queued after it runs
    wait_for(inner.idle.is_set, "the released chunk finished")
    scored = len(inner.rows_scored)
    assert scored <= 6, inner.rows_scored  # stopped, not 30 chunks
    inner.release.clear()  # a new call is held at its second chunk: it outlives its 0.3 s deadline
    try:
        with Client(srv.target) as c, pytest.raises(MovieRecError) as err:
            list(c.iter_score_all(K, chunk_users=4, timeout=0.3))
    finally:
        inner.release.set()
    assert err.value.code.name == "DEADLINE_EXCEEDED"


def test_async_client_and_cli(server: Any, scorer: Any, tmp_path: Path) -> None:
    async def go() -> tuple[list[bulk_sdk.BulkChunk], Any]:
        async with AsyncClient(server.target) as ac:
            chunks = [ch async for ch in ac.iter_score_all(K, shard=(0, 2), chunk_users=25)]
            res = await ac.score_all(K, out=tmp_path / "a.parquet", shard=(0, 2))
        return chunks, res

    chunks, res = asyncio.run(go())
    half = len(scorer.users) // 2
    np.testing.assert_array_equal(np.concatenate([c.user_ids for c in chunks]), scorer.users.raw[:half])
    assert_same(read(res.out), pd.concat([c.to_pandas() for c in chunks]))

    from movierec.cli import main

    out = tmp_path / "cli.csv"
    argv = ["score-all", "--target", server.target, "-k", str(K), "--out", str(out), "--shard", "0/2"]
    assert main([*argv, "--no-progress"]) == 0
    assert_same(read(out), read(res.out))
    assert main([*argv, "--resume", "--no-progress"]) == 0  # already complete: a no-op
    assert main(["score-all", "--target", server.target, "-k", "0", "--out", str(out), "--no-progress"]) == 2


def test_bulk_on_the_test_device_matches_cpu(make_server: Any, scorer: Any, tiny_artifact: Path) -> None:
    """MOVIEREC_TEST_DEVICE=cuda (make gpu-check) runs the server's scorer on the GPU; default cpu."""
    import os

    from movierec.core.scoring import Scorer

    device = os.environ.get("MOVIEREC_TEST_DEVICE", "cpu")
    dev_scorer = Scorer.load(tiny_artifact, device=device)
    assert str(dev_scorer.device).startswith(device)
    srv = make_server(dev_scorer)
    with Client(srv.target) as c:
        chunks = list(c.iter_score_all(K, chunk_users=50))
    got = pd.concat([ch.to_pandas() for ch in chunks])
    assert_same(got, in_process(scorer))
