"""bench.bench_bulk: reading score-all's own clock from its last line, in both of its forms."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: `bench` is not installed

from bench.bench_bulk import score_all_seconds  # noqa: E402


def test_one_target_and_several_connections_are_both_read_by_users_per_second() -> None:
    one = "progress...\nrecs.parquet: 1000000 rows, 100000 users in 4.9s (20408 users/s)\n"
    spread = "recs.parquet: 1000000 rows, 100000 users from 16 shards over 4 connections in 4.6s (21557 users/s)\n"
    assert score_all_seconds(one, 100_000) == pytest.approx(100_000 / 20408)
    assert score_all_seconds(spread, 100_000) == pytest.approx(100_000 / 21557)


def test_a_missing_clock_is_refused_not_replaced() -> None:
    with pytest.raises(SystemExit, match="did not print its own time"):
        score_all_seconds("recs.parquet written\n", 100_000)
