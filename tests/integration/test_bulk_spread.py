"""Bulk scoring spread over several servers; one is stopped mid-run: no user lost or duplicated."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from movierec.cli import main
from movierec.client import Client
from movierec.client._bulk import spread_score_all


def test_spread_over_two_servers_survives_one_stopping(make_server, slow, scorer, tmp_path: Path) -> None:
    slow_scorer = slow(0.2)  # 0.2 s per chunk of 5 users: a shard of 30 users takes >= 1.2 s on server a
    slow_a = make_server(slow_scorer)
    b = make_server()
    out = tmp_path / "recs.parquet"
    killer = threading.Timer(0.5, lambda: slow_a.stop(0))
    killer.start()
    try:
        with Client([slow_a.target, b.target]) as client:
            res = spread_score_all(client, 5, out, shards=4, chunk_users=5, progress=False)
    finally:
        killer.cancel()
    table = pq.read_table(out).to_pandas()
    n_users = len(scorer.users)
    # server a did part of its shards and was stopped before finishing them: b resumed the rest
    assert 0 < sum(slow_scorer.rows_scored) < n_users // 2
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
