"""Vectorized request validation and server settings."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.core.artifact import RatingScale
from movierec.core.sparse import IdMap
from movierec.server import validation as v
from movierec.server.config import ServerSettings
from movierec.server.errors import ErrorCode, RequestError

ITEMS = IdMap.from_ids([10, 20, 30, 40])
USERS = IdMap.from_ids([1, 2, 3])
STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)


def err(fn, *args, **kw) -> RequestError:  # type: ignore[no-untyped-def]
    with pytest.raises(RequestError) as exc:
        fn(*args, **kw)
    return exc.value


def test_users_and_movies() -> None:
    np.testing.assert_array_equal(v.users_to_index(np.array([3, 1]), USERS), [2, 0])
    e = err(v.users_to_index, np.array([1, 9, 8]), USERS)
    assert e.code == ErrorCode.NOT_FOUND and "user_ids[1]" in e.message and "9" in e.message
    e = err(v.movies_to_index, np.array([10, 99]), ITEMS, "exclude_movie_ids")
    assert e.code == ErrorCode.INVALID_ARGUMENT and "exclude_movie_ids[1]" in e.message
    e = err(v.movies_to_index, np.array([10, 20, 10]), ITEMS, "include_movie_ids")
    assert "include_movie_ids[2]: duplicate movie id 10" in e.message
    assert v.movies_to_index(np.array([10, 10]), ITEMS, "x", unique=False).tolist() == [0, 0]


def test_counts_and_k() -> None:
    assert "empty" in err(v.check_count, 0, 5, "user_ids").message
    assert "limit is 5" in err(v.check_count, 6, 5, "user_ids").message
    assert "1 <= k <= 4" in err(v.check_k, 0, 4).message
    assert "1 <= k <= 4" in err(v.check_k, 5, 4).message
    v.check_k(0, 4, allow_zero=True)
    v.check_k(4, 4)


def test_rating_vectors() -> None:
    ids = np.array([10, 30, 20], dtype=np.int64)
    csr = v.rating_vectors(ids, np.array([5, 1, 3], np.float32), np.array([2, 1]), np.array([2, 1]), ITEMS, STARS)
    assert csr.n_rows == 2 and csr.indptr.tolist() == [0, 2, 3]
    assert csr.indices.tolist() == [0, 2, 1] and csr.values.tolist() == [5, 1, 3]
    e = err(v.rating_vectors, ids, np.array([5, 1, 7], np.float32), np.array([2, 1]), np.array([2, 1]), ITEMS, STARS)
    assert "queries[1].ratings.ratings[0]: 7 is not on the model's rating scale 1..5 step 1" in e.message
    e = err(
        v.rating_vectors, ids, np.array([5, np.nan, 3], np.float32), np.array([2, 1]), np.array([2, 1]), ITEMS, STARS
    )
    assert "queries[0].ratings.ratings[1]" in e.message
    e = err(
        v.rating_vectors,
        np.array([10, 20, 20]),
        np.ones(3, np.float32),
        np.array([1, 2]),
        np.array([1, 2]),
        ITEMS,
        STARS,
    )
    assert "queries[1].ratings.movie_ids[1]: duplicate" in e.message
    # the same movie in two different vectors is fine
    v.rating_vectors(np.array([10, 10]), np.ones(2, np.float32), np.array([1, 1]), np.array([1, 1]), ITEMS, STARS)
    e = err(v.rating_vectors, ids, np.ones(3, np.float32), np.array([2, 1]), np.array([1, 2]), ITEMS, STARS)
    assert "same length" in e.message
    t = v.target_lists(np.array([40, 10, 20]), np.array([2, 1]), ITEMS)
    assert t.indices.tolist() == [3, 0, 1]  # request order kept


def test_ratings_are_checked_against_the_model_scale() -> None:
    ids = np.array([10, 20, 30, 40], dtype=np.int64)
    one_row = (np.array([4]), np.array([4]), ITEMS, HALF_STARS)
    csr = v.rating_vectors(ids, np.array([0.5, 1.5, 3.5, 5.0], np.float32), *one_row)
    assert csr.values.tolist() == [0.5, 1.5, 3.5, 5.0]
    for bad, value in ((0.25, "0.25"), (5.5, "5.5"), (3.3, "3.3")):
        e = err(v.rating_vectors, ids, np.array([4, 4, bad, 1], np.float32), *one_row)
        assert e.code == ErrorCode.INVALID_ARGUMENT
        assert e.message.startswith(
            f"queries[0].ratings.ratings[2]: {value} is not on the model's rating scale 0.5..5 step 0.5"
        ), e.message
    e = err(v.rating_vectors, ids[:1], np.array([0.5], np.float32), np.array([1]), np.array([1]), ITEMS, STARS)
    assert "0.5 is not on the model's rating scale 1..5 step 1" in e.message
    continuous = RatingScale(1.0, 5.0, 0.0)
    v.rating_vectors(ids[:1], np.array([3.3], np.float32), np.array([1]), np.array([1]), ITEMS, continuous)
    e = err(v.rating_vectors, ids[:1], np.array([np.inf], np.float32), np.array([1]), np.array([1]), ITEMS, continuous)
    assert "inf is not on the model's rating scale 1..5 (any value)" in e.message


def test_settings_flags_env_defaults() -> None:
    s = ServerSettings.from_sources(
        {"port": None, "max_delay_ms": 3.5}, {"MOVIEREC_PORT": "6000", "MOVIEREC_MAX_DELAY_MS": "9"}
    )
    assert s.port == 6000 and s.max_delay_ms == 3.5 and s.max_batch_size == 256
    assert ServerSettings.from_sources({}, {}).port == 50051
    with pytest.raises(ValueError, match="MOVIEREC_PORT"):
        ServerSettings.from_sources({}, {"MOVIEREC_PORT": "abc"})
    with pytest.raises(ValueError, match="max_batch_size"):
        ServerSettings(max_batch_size=0)
    with pytest.raises(ValueError, match="device"):
        ServerSettings(device="tpu")
