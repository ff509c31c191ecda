"""Hostile input, generated: arbitrary messages for every RPC against one live server.

Every answer must be OK or a status from the documented set whose message starts with the offending field;
never UNKNOWN or INTERNAL; the server answers a good request afterwards. `MOVIEREC_FUZZ_SCALE` (default 1)
multiplies the number of examples (`make soak` runs more).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from movierec.v1 import bulk_pb2 as bulk
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types

SCALE = float(os.environ.get("MOVIEREC_FUZZ_SCALE", "1"))
TRIED: Counter[str] = Counter()  # generated requests per RPC (reported at the end)
ACCEPTED: Counter[str] = Counter()  # generated requests that were valid and served

OK = grpc.StatusCode.OK
DOCUMENTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
FIELDS = {
    "Recommend": {"user_ids", "k", "exclude_movie_ids", "include_movie_ids"},
    "RecommendForRatings": {"queries", "k", "exclude_movie_ids", "include_movie_ids"},
    "Stream": {"user_ids", "k", "exclude_movie_ids", "include_movie_ids", "queries", "query"},
    "GetMovies": {"movie_ids"},
    "ScoreAll": {"k", "shard", "user_range", "chunk_users", "resume_from"},
    "UpsertMovies": {"movies"},
}
HEAD = re.compile(r"^([a-z_]+)[\[\.: ]")


def fuzz_settings(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=SCALE == 1,  # `make test` is reproducible; the soak explores
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )


def check_status(code: grpc.StatusCode, details: str, rpc: str, extra: set[grpc.StatusCode] = frozenset()) -> None:  # type: ignore[assignment]
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (rpc, code, details)
    if code == OK:
        return
    assert code in DOCUMENTED | extra, (rpc, code, details)
    m = HEAD.match(details)
    assert m and m.group(1) in FIELDS[rpc], (rpc, code, details)


@pytest.fixture(scope="module")
def stub(server: Any) -> Any:
    ch = grpc.insecure_channel(server.target, options=[("grpc.max_receive_message_length", 64 << 20)])
    yield pb_grpc.RecommenderServiceStub(ch)
    ch.close()


@pytest.fixture(scope="module")
def ids(scorer: Any) -> Any:
    return scorer.users.raw.tolist(), scorer.items.raw.tolist(), len(scorer.items)


def id_strategy(known: list[int]) -> Any:
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from([0, -1, 10**9, 2**31, 2**63 - 1, -(2**63)]),
        st.integers(-(2**63), 2**63 - 1),
    )


def k_strategy(n_items: int) -> Any:
    return st.one_of(
        st.sampled_from([0, 1, 10, n_items, n_items + 1, 2**31 - 1, -(2**31), -1]),
        st.integers(-(2**31), 2**31 - 1),
    )


RATING = st.one_of(
    st.sampled_from([0.0, 6.0, -1.0, 1.0, 5.0, 3.5, float("nan"), float("inf"), -float("inf")]),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
)


@st.composite
def recommend_requests(draw: Any, users: list[int], movies: list[int], n_items: int) -> pb.RecommendRequest:
    return pb.RecommendRequest(
        user_ids=draw(st.lists(id_strategy(users), max_size=60)),
        k=draw(k_strategy(n_items)),
        exclude_movie_ids=draw(st.lists(id_strategy(movies), max_size=8)),
        include_movie_ids=draw(st.lists(id_strategy(movies), max_size=8)),
        include_titles=draw(st.booleans()),
    )


I32 = st.one_of(st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1))
PROFILES = st.one_of(
    st.none(),
    st.builds(
        types.UserProfile,
        age=st.one_of(st.sampled_from([0, 1, 25, 120, 121, -1]), I32),
        gender=st.one_of(st.sampled_from(["", "F", "m", "X", "female", " f "]), st.text(max_size=5)),
        occupation=st.one_of(st.sampled_from(["", "student", "Astronaut"]), st.text(max_size=120)),
        zip_code=st.one_of(st.sampled_from(["", "94110", "0" * 16, "0" * 17]), st.text(max_size=20)),
    ),
)


@st.composite
def ratings_requests(draw: Any, movies: list[int], n_items: int) -> pb.RecommendForRatingsRequest:
    queries = []
    for _ in range(draw(st.one_of(st.integers(0, 6), st.sampled_from([0, 50, 51])))):
        mids = draw(st.lists(id_strategy(movies), max_size=8))
        n = len(mids) if draw(st.booleans()) else draw(st.integers(0, 8))  # mismatched lengths too
        query = pb.RatingsQuery(
            ratings=types.RatingVector(movie_ids=mids, ratings=draw(st.lists(RATING, min_size=n, max_size=n))),
            predict_movie_ids=draw(st.lists(id_strategy(movies), max_size=6)),
        )
        profile = draw(PROFILES)
        if profile is not None:
            query.profile.CopyFrom(profile)
        queries.append(query)
    return pb.RecommendForRatingsRequest(
        queries=queries,
        k=draw(k_strategy(n_items)),
        exclude_movie_ids=draw(st.lists(id_strategy(movies), max_size=5)),
        include_movie_ids=draw(st.lists(id_strategy(movies), max_size=5)),
        include_titles=draw(st.booleans()),
    )


def call(fn: Any, req: Any) -> tuple[grpc.StatusCode, str, Any]:
    try:
        return OK, "", fn(req, timeout=30)
    except grpc.RpcError as err:
        return err.code(), err.details() or "", None


def test_fuzz_recommend(stub: Any, ids: Any) -> None:
    users, movies, n_items = ids

    @fuzz_settings(150)
    @given(recommend_requests(users, movies, n_items))
    def run(req: pb.RecommendRequest) -> None:
        TRIED["Recommend"] += 1
        code, details, resp = call(stub.Recommend, req)
        check_status(code, details, "Recommend")
        if code == OK:
            assert resp.model_version and len(resp.recommendations) == len(req.user_ids)

    run()


def test_fuzz_recommend_for_ratings(stub: Any, ids: Any) -> None:
    _, movies, n_items = ids

    @fuzz_settings(150)
    @given(ratings_requests(movies, n_items))
    def run(req: pb.RecommendForRatingsRequest) -> None:
        TRIED["RecommendForRatings"] += 1
        code, details, resp = call(stub.RecommendForRatings, req)
        check_status(code, details, "RecommendForRatings")
        if code == OK:
            assert len(resp.results) == len(req.queries)

    run()


def test_fuzz_stream(stub: Any, ids: Any) -> None:
    users, movies, n_items = ids
    one = st.one_of(
        recommend_requests(users, movies, n_items).map(lambda r: pb.StreamRecommendRequest(recommend=r)),
        ratings_requests(movies, n_items).map(lambda r: pb.StreamRecommendRequest(recommend_for_ratings=r)),
        st.just(pb.StreamRecommendRequest()),  # no query set
    )

    @fuzz_settings(20)
    @given(st.lists(one, min_size=1, max_size=6))
    def run(reqs: list[pb.StreamRecommendRequest]) -> None:
        TRIED["StreamRecommend"] += len(reqs)
        for i, r in enumerate(reqs):
            r.request_id = str(i)
        answers = list(stub.StreamRecommend(iter(reqs), timeout=30))
        assert sorted(a.request_id for a in answers) == sorted(r.request_id for r in reqs)
        for a in answers:
            if a.WhichOneof("result") == "error":
                check_status(grpc.StatusCode(_code(a.error.code)), a.error.message, "Stream")

    run()


def _code(number: int) -> tuple[int, str]:
    return next(c.value for c in grpc.StatusCode if c.value[0] == number)


def test_fuzz_get_movies(stub: Any, ids: Any) -> None:
    _, movies, _ = ids

    @fuzz_settings(60)
    @given(st.lists(id_strategy(movies), max_size=30))
    def run(mids: list[int]) -> None:
        TRIED["GetMovies"] += 1
        code, details, resp = call(stub.GetMovies, pb.GetMoviesRequest(movie_ids=mids))
        check_status(code, details, "GetMovies")
        if code == OK:
            assert [m.movie_id for m in resp.movies] == (mids or sorted(movies))

    run()


def test_fuzz_score_all(stub: Any, ids: Any) -> None:
    users, _, n_items = ids
    i32 = st.one_of(st.sampled_from([0, 1, 2, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1))

    @st.composite
    def requests(draw: Any) -> bulk.ScoreAllRequest:
        req = bulk.ScoreAllRequest(k=draw(k_strategy(n_items)), chunk_users=draw(i32))
        which = draw(st.sampled_from(["none", "shard", "range"]))
        if which == "shard":
            req.shard.index, req.shard.count = draw(i32), draw(i32)
        elif which == "range":
            req.user_range.start_user_id = draw(id_strategy(users))
            req.user_range.end_user_id = draw(id_strategy(users))
        if draw(st.booleans()):
            c = req.resume_from
            c.model_version = draw(st.sampled_from(["", "nope", "x" * 200]))
            c.range_start, c.range_end = draw(id_strategy(users)), draw(id_strategy(users))
            c.next_user_index, c.k = draw(id_strategy(users)), draw(i32)
        return req

    @fuzz_settings(80)
    @given(requests())
    def run(req: bulk.ScoreAllRequest) -> None:
        TRIED["ScoreAll"] += 1
        try:
            for _ in stub.ScoreAll(req, timeout=30):
                pass
            code, details = OK, ""
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
        check_status(code, details, "ScoreAll", {grpc.StatusCode.FAILED_PRECONDITION})

    run()


def test_fuzz_upsert_movies(make_server: Any, scorer: Any) -> None:
    """On a server of its own (an upsert changes the catalog other tests of the session compare against)."""
    srv = make_server(scorer, max_movies_per_upsert=20)
    ch = grpc.insecure_channel(srv.target)
    s = pb_grpc.RecommenderServiceStub(ch)
    trained = scorer.items.raw.tolist()
    ids = st.one_of(st.sampled_from(trained), st.integers(100_000, 100_050), id_strategy([1]))
    movie = st.builds(
        types.Movie,
        movie_id=ids,
        title=st.one_of(st.sampled_from(["", " ", "A Film", "x" * 1001]), st.text(max_size=40)),
        year=st.one_of(st.sampled_from([0, 1869, 1870, 2100, 2101]), I32),
        genres=st.lists(st.one_of(st.sampled_from(["Comedy", "Unheard-of", ""]), st.text(max_size=10)), max_size=4),
    )

    @fuzz_settings(80)
    @given(st.lists(movie, max_size=22))
    @example([types.Movie(movie_id=100_000, title=" A Film ", year=1999, genres=["Comedy", "Unheard-of"])])
    @example([types.Movie(movie_id=trained[0], title="Renamed", year=0)])
    def run(movies: list[types.Movie]) -> None:
        TRIED["UpsertMovies"] += 1
        before = len(s.GetMovies(pb.GetMoviesRequest(), timeout=30).movies)
        code, details, resp = call(s.UpsertMovies, pb.UpsertMoviesRequest(movies=movies))
        check_status(code, details, "UpsertMovies")
        catalog = s.GetMovies(pb.GetMoviesRequest(), timeout=30).movies
        if code != OK:
            assert len(catalog) == before  # a refused call changes nothing
            return
        ACCEPTED["UpsertMovies"] += 1
        assert resp.added + resp.updated == len(movies) and resp.n_movies == len(catalog) == before + resp.added
        got = s.GetMovies(pb.GetMoviesRequest(movie_ids=[m.movie_id for m in movies]), timeout=30).movies
        assert [g.title for g in got] == [m.title.strip() for m in movies]
        ids_now = [m.movie_id for m in catalog]
        assert ids_now == sorted(ids_now)

    run()
    assert ACCEPTED["UpsertMovies"] >= 2  # the valid examples at least were applied
    user = int(scorer.users.raw[0])
    assert len(s.Recommend(pb.RecommendRequest(user_ids=[user], k=5), timeout=30).recommendations[0].movie_ids) == 5
    ch.close()


def test_raw_bytes_are_refused_cleanly(server: Any, stub: Any) -> None:
    """Bytes that are not a protobuf message: INVALID_ARGUMENT naming `request`, for unary and streams."""
    ch = grpc.insecure_channel(server.target)
    methods = ["Recommend", "RecommendForRatings", "GetMovies", "GetModelInfo"]
    unary = {m: ch.unary_unary(f"/movierec.v1.RecommenderService/{m}") for m in methods}
    stream = ch.stream_stream("/movierec.v1.RecommenderService/StreamRecommend")
    score_all = ch.unary_stream("/movierec.v1.RecommenderService/ScoreAll")
    garbage = [b"\xff\xff\xff\xff", b"\x0a\xff", b"\x12\x05abc", b"\x08" + b"\xff" * 11, b"\x07"]

    # none of these parses, so UpsertMovies is safe to try on the shared server (a random message could add)
    unary_all = {**unary, "UpsertMovies": ch.unary_unary("/movierec.v1.RecommenderService/UpsertMovies")}
    for m, fn in unary_all.items():
        for data in garbage:
            TRIED["raw bytes"] += 1
            code, details, _ = call(fn, data)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (m, data, code, details)
            assert details.startswith("request:") and m in details, details
    for data in garbage:
        TRIED["raw bytes"] += 1
        with pytest.raises(grpc.RpcError) as exc:
            list(stream(iter([data]), timeout=10))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value
        with pytest.raises(grpc.RpcError) as exc:
            list(score_all(data, timeout=10))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value

    @fuzz_settings(150)
    @given(st.binary(max_size=300), st.sampled_from(methods))
    def run(data: bytes, m: str) -> None:
        TRIED["raw bytes"] += 1
        code, details, _ = call(unary[m], data)  # random bytes may well parse: any documented answer
        if details.startswith("request:"):
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        else:
            check_status(code, details, m if m in FIELDS else "GetMovies")

    run()
    ch.close()
    good = stub.Recommend(pb.RecommendRequest(user_ids=[int(server.server.engine.scorer.users.raw[0])], k=3))
    assert len(good.recommendations[0].movie_ids) == 3


def test_enormous_and_oversized_messages(make_server: Any, scorer: Any) -> None:
    srv = make_server(max_message_bytes=256 * 1024)
    ch = grpc.insecure_channel(srv.target)
    s = pb_grpc.RecommenderServiceStub(ch)
    user, movie = int(scorer.users.raw[0]), int(scorer.items.raw[0])
    # over the message limit: RESOURCE_EXHAUSTED from gRPC itself, before any parsing
    TRIED["oversize"] += 2
    code, details, _ = call(s.Recommend, pb.RecommendRequest(user_ids=[2**40] * 100_000, k=1))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    big = types.RatingVector(movie_ids=list(range(40_000)), ratings=[3.0] * 40_000)
    code, details, _ = call(s.RecommendForRatings, pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery(ratings=big)], k=1))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    # enormous but under the limit: refused by validation, naming the field
    TRIED["enormous"] += 2
    code, details, _ = call(s.Recommend, pb.RecommendRequest(user_ids=[user] * 20_000, k=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("user_ids"), details
    vec = types.RatingVector(movie_ids=[movie] * 20_000, ratings=[3.0] * 20_000)
    code, details, _ = call(s.RecommendForRatings, pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery(ratings=vec)], k=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "duplicate movie id" in details, details
    assert s.Recommend(pb.RecommendRequest(user_ids=[user], k=2)).recommendations[0].user_id == user
    ch.close()


def test_zz_report_fuzz_counts(server: Any, stub: Any) -> None:
    """Runs last in this module: the server still serves, and the number of generated requests is printed."""
    user = int(server.server.engine.scorer.users.raw[0])
    assert stub.Recommend(pb.RecommendRequest(user_ids=[user], k=3)).model_version
    total = sum(TRIED.values())
    print(f"\nFUZZ: {total} generated bad/odd requests: {dict(TRIED)}")
    assert total >= 100 * min(SCALE, 1)
    assert np.isfinite(total)
