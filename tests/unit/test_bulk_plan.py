"""ScoreAll planning (server/bulk.py): shard and range arithmetic, chunk sizing, cursor checks; no grpc."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from movierec.core.sparse import IdMap
from movierec.server.bulk import plan
from movierec.server.errors import RequestError
from movierec.v1 import bulk_pb2 as bulk

SCORER = SimpleNamespace(
    users=IdMap(np.array([3, 5, 8, 9, 20, 21, 40], dtype=np.int64)), items=IdMap(np.arange(50))
)


def test_shards_partition_the_users_exactly() -> None:
    for count in (1, 2, 3, 7, 10):
        ranges = [plan(bulk.ScoreAllRequest(k=5, shard={"index": i, "count": count}), SCORER, "v", 1 << 24)
                  for i in range(count)]  # fmt: skip
        covered = np.concatenate([np.arange(p.start, p.end) for p in ranges])
        np.testing.assert_array_equal(covered, np.arange(7))


def test_user_range_maps_raw_ids_half_open() -> None:
    p = plan(
        bulk.ScoreAllRequest(k=5, user_range={"start_user_id": 5, "end_user_id": 21}), SCORER, "v", 1 << 24
    )
    assert (p.start, p.end) == (1, 5)  # users 5, 8, 9, 20
    with pytest.raises(RequestError, match="end_user_id"):
        plan(
            bulk.ScoreAllRequest(k=5, user_range={"start_user_id": 5, "end_user_id": 5}), SCORER, "v", 1 << 24
        )


def test_chunk_fits_the_message_limit_and_cursor_is_checked() -> None:
    p = plan(bulk.ScoreAllRequest(k=50, chunk_users=10_000), SCORER, "v", 64 * 1024)
    assert p.chunk * (8 + 12 * 50) <= 64 * 1024 and p.chunk > 50
    cur = bulk.ScoreAllCursor(model_version="v", range_start=0, range_end=7, next_user_index=4, k=5)
    assert plan(bulk.ScoreAllRequest(k=5, resume_from=cur), SCORER, "v", 1 << 24).next == 4
    with pytest.raises(RequestError) as err:
        plan(bulk.ScoreAllRequest(k=5, resume_from=cur), SCORER, "w", 1 << 24)
    assert err.value.code.name == "FAILED_PRECONDITION"
    cur.next_user_index = 9
    with pytest.raises(RequestError, match="next_user_index"):
        plan(bulk.ScoreAllRequest(k=5, resume_from=cur), SCORER, "v", 1 << 24)
