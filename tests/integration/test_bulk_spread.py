"""Bulk scoring spread over several servers; one is stopped mid-run: no user lost or duplicated."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from waiting import WAIT_S, wait_for

from movierec.cli import main
from movierec.client import Client
from movierec.client._bulk import spread_score_all


class HoldAfterFirstChunk:
    """Delegates to a real scorer. Once armed, the first chunk(s) it scores set `scored`; every later call
    blocks until `release` is set, so the server holding it cannot finish its shards before the test
    has stopped it, however slow or fast the machine is."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.armed = False
        self.rows_scored: list[int] = []
        self.scored = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def topk(self, inputs: Any, k: int, **kw: Any) -> Any:
        self.calls += 1
        if not self.armed:
            return self._inner.topk(inputs, k, **kw)
        if self.scored.is_set():
            self.release.wait(WAIT_S)
        out = self._inner.topk(inputs, k, **kw)
        if not self.release.is_set():  # what it scores after the stop goes nowhere
            self.rows_scored.append(inputs.n_rows)
        self.scored.set()
        return out


def test_spread_over_two_servers_survives_one_stopping(make_server, scorer, tmp_path: Path) -> None:
    held = HoldAfterFirstChunk(scorer)
    slow_a = make_server(held)
    b = make_server()
    out = tmp_path / "recs.parquet"
    n_users = len(scorer.users)

    def stop_a_after_its_first_chunk() -> None:
        try:
            if held.scored.wait(WAIT_S):
                slow_a.stop(0).result(WAIT_S)
        finally:
            held.release.set()  # let the held calls return (to a stopped server: dropped)

    with Client([slow_a.target, b.target]) as client:
        # round_robin sends calls only to the servers already connected: warm both up before the shards start
        def both_served() -> bool:
            client.recommend([int(scorer.users.raw[0])], 1)
            return held.calls > 0 and b.stats.requests_served > 0

        wait_for(both_served, "both servers answered a call")
        held.armed = True
        killer = threading.Thread(target=stop_a_after_its_first_chunk, daemon=True)
        killer.start()
        try:
            res = spread_score_all(client, 5, out, shards=4, chunk_users=5, progress=False)
        finally:
            held.release.set()
            killer.join(WAIT_S)
    assert held.scored.is_set(), "server a was given no shard"
    table = pq.read_table(out).to_pandas()
    # server a did part of its shards and was stopped before finishing them: b resumed the rest
    assert 0 < sum(held.rows_scored) < n_users // 2
    assert res.users == n_users == table["user_id"].nunique()
    assert len(table) == n_users * 5, "a user was lost or duplicated"
    assert table["user_id"].tolist() == sorted(table["user_id"].tolist())
    items, _ = scorer.recommend_users(np.arange(n_users), 5)
    np.testing.assert_array_equal(table["movie_id"].to_numpy().reshape(n_users, 5), scorer.items.to_raw(items))
    assert not list(tmp_path.glob("recs.parquet.shard-*")), "shard files left behind"


def test_cli_with_several_targets_writes_csv(server, make_server, scorer, tmp_path: Path) -> None:
    other = make_server()
    out = tmp_path / "recs.csv"
    assert main(["score-all", "--target", f"{server.target},{other.target}", "-k", "3", "--out", str(out),
                 "--no-progress"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "user_id,rank,movie_id,score" or lines[0].replace('"', "") == "user_id,rank,movie_id,score"
    assert len(lines) == 1 + 3 * len(scorer.users)


def test_cli_connections_pull_shards_over_separate_connections(server, scorer, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    assert main(["score-all", "--target", server.target, "-k", "4", "--out", str(out), "--connections", "3",
                 "--chunk-users", "7", "--no-progress"]) == 0  # fmt: skip
    table = pq.read_table(out).to_pandas()
    n_users = len(scorer.users)
    assert len(table) == 4 * n_users and table["user_id"].nunique() == n_users
    assert table["user_id"].tolist() == sorted(table["user_id"].tolist())  # 12 shards joined in user order
    items, _ = scorer.recommend_users(np.arange(n_users), 4)
    np.testing.assert_array_equal(table["movie_id"].to_numpy().reshape(n_users, 4), scorer.items.to_raw(items))
    assert not list(tmp_path.glob("recs.parquet.shard-*")), "shard files left behind"
