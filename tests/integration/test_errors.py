"""Every bad-input case gets the right status code and a message naming the field; the server keeps serving."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest

from movierec.client import Client, MovieRecError
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def expect(code: grpc.StatusCode, field: str, call: Any) -> MovieRecError:
    with pytest.raises(MovieRecError) as exc:
        call()
    assert exc.value.code == code, exc.value
    assert field in exc.value.details, exc.value.details
    return exc.value


def test_recommend_bad_inputs(client: Client, scorer: Any, server: Any) -> None:
    user = int(scorer.users.raw[0])
    movie = int(scorer.items.raw[0])
    n_items = len(scorer.items)
    limit = server.settings.max_users_per_call
    expect(grpc.StatusCode.NOT_FOUND, "user_ids[1]", lambda: client.recommend([user, -42]))
    expect(INVALID, "user_ids", lambda: client.recommend([]))
    expect(INVALID, f"limit is {limit}", lambda: client.recommend([user] * (limit + 1)))
    expect(INVALID, "k: 0", lambda: client.recommend(user, k=0))
    expect(INVALID, "k: -3", lambda: client.recommend(user, k=-3))
    err = expect(INVALID, f"k <= {n_items}", lambda: client.recommend(user, k=n_items + 1))
    assert "catalog size" in err.details
    expect(INVALID, "exclude_movie_ids[1]", lambda: client.recommend(user, exclude=[movie, 10**9]))
    expect(INVALID, "include_movie_ids[0]", lambda: client.recommend(user, include=[-1]))
    expect(INVALID, "duplicate movie id", lambda: client.recommend(user, exclude=[movie, movie]))
    assert len(client.recommend(user, k=n_items)[0]) <= n_items  # k == catalog size is allowed
    assert client.health() == "SERVING"


@pytest.mark.parametrize(
    ("rating", "text"),
    [(0.5, "0.5"), (5.5, "5.5"), (3.5, "3.5"), (math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")],
)
def test_rating_out_of_range(client: Client, scorer: Any, rating: float, text: str) -> None:
    m = scorer.items.raw
    err = expect(
        INVALID,
        "queries[1].ratings.ratings[1]",
        lambda: client.recommend_for_ratings([{int(m[0]): 3.0}, {int(m[1]): 4.0, int(m[2]): rating}]),
    )
    assert f"{text} is not on the model's rating scale 1..5 step 1" in err.details  # the tiny data: whole stars


def test_rating_vector_bad_inputs(client: Client, scorer: Any) -> None:
    m = scorer.items.raw
    expect(
        INVALID,
        "queries[0].ratings.movie_ids[1]",
        lambda: client.recommend_for_ratings({int(m[0]): 3.0, 10**9: 4.0}),
    )
    expect(
        INVALID,
        "queries[0].ratings.movie_ids[1]: duplicate",
        lambda: client.recommend_for_ratings(([int(m[0]), int(m[0])], [3.0, 4.0])),
    )
    expect(INVALID, "queries: empty", lambda: client.recommend_for_ratings([]))
    expect(INVALID, "k: 81", lambda: client.recommend_for_ratings({int(m[0]): 3.0}, k=len(m) + 1))
    expect(INVALID, "queries[0].predict_movie_ids[0]", lambda: client.predict({int(m[0]): 3.0}, [10**9]))
    expect(INVALID, "duplicate", lambda: client.predict({int(m[0]): 3.0}, [int(m[1]), int(m[1])]))
    expect(INVALID, "movie_ids[1]", lambda: client.movies([int(m[0]), 10**9]))
    # mismatched lengths and k=0 without predictions: only reachable through raw protos
    with grpc.insecure_channel(client.target) as channel:
        stub = pb_grpc.RecommenderServiceStub(channel)
        bad = pb.RecommendForRatingsRequest(
            queries=[pb.RatingsQuery(ratings=types.RatingVector(movie_ids=[int(m[0])], ratings=[1.0, 2.0]))],
            k=3,
        )
        with pytest.raises(grpc.RpcError) as exc:
            stub.RecommendForRatings(bad, timeout=5)
        assert exc.value.code() == INVALID and "same length" in exc.value.details()
        nothing = pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery()], k=0)
        with pytest.raises(grpc.RpcError) as exc:
            stub.RecommendForRatings(nothing, timeout=5)
        assert exc.value.code() == INVALID and "k: 0" in exc.value.details()
    assert client.health() == "SERVING"


def test_response_above_message_limit_is_refused(make_server: Any, scorer: Any) -> None:
    srv = make_server(max_message_bytes=64 * 1024, max_users_per_call=1000)
    users = scorer.users.raw[:100].tolist()
    with Client(srv.target) as c:
        err = expect(INVALID, "message limit", lambda: c.recommend(users, k=len(scorer.items), titles=True))
        assert "65536" in err.details
        assert len(c.recommend(users[:2], k=5)) == 2
