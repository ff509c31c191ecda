"""SDK conversions (no server): request building, result types, health status names, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest

from movierec.client import MovieRecError, RatingsQuery, RecommendQuery
from movierec.client import _convert as c
from movierec.client._options import SERVICE_CONFIG, channel_options, resolve_timeout
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import types_pb2 as types


def test_requests() -> None:
    r = c.recommend_request(RecommendQuery(np.array([3, 1]), k=5, exclude=[7], titles=True))
    assert list(r.user_ids) == [3, 1] and r.k == 5 and list(r.exclude_movie_ids) == [7] and r.include_titles
    assert list(c.recommend_request(RecommendQuery(4)).user_ids) == [4]
    with pytest.raises(TypeError):
        c.recommend_request(RecommendQuery([1.5]))
    q = c.ratings_request(RatingsQuery({1: 5.0, 2: 3.5}, k=0, predict=[9, 8]))
    assert len(q.queries) == 1 and list(q.queries[0].ratings.movie_ids) == [1, 2]
    assert list(q.queries[0].predict_movie_ids) == [9, 8]
    q = c.ratings_request(RatingsQuery([{1: 5.0}, ([2, 3], np.array([1.0, 2.0]))], predict=[[4], [5, 6]]))
    assert [list(x.predict_movie_ids) for x in q.queries] == [[4], [5, 6]]
    assert list(q.queries[1].ratings.ratings) == [1.0, 2.0]
    assert c.is_single_vector(([1, 2], [3.0, 4.0])) and not c.is_single_vector([{1: 2.0}])


def test_results_and_pandas() -> None:
    resp = pb.RecommendResponse(
        model_version="abc",
        recommendations=[
            types.RecommendationList(user_id=7, movie_ids=[3, 4], scores=[0.9, 0.5], titles=["a", "b"])
        ],
    )
    recs = c.recommendations(resp)
    assert recs.model_version == "abc" and recs[0].user_id == 7
    assert recs[0].movie_ids.dtype == np.int64 and recs[0].scores.dtype == np.float32
    df = recs.to_pandas()
    assert df["rank"].tolist() == [1, 2] and df["title"].tolist() == ["a", "b"]
    err = c.stream_result(
        pb.StreamRecommendResponse(request_id="x", error=pb.StreamError(code=5, message="no"))
    )
    assert isinstance(err.error, MovieRecError) and err.error.code == grpc.StatusCode.NOT_FOUND and not err.ok


def test_health_status_names_and_options() -> None:
    from grpc_health.v1 import health_pb2

    status = health_pb2.HealthCheckResponse
    assert c.health_status(status(status=status.SERVING)) == "SERVING"
    assert c.health_status(status(status=status.NOT_SERVING)) == "NOT_SERVING"
    assert c.health_status(status()) == "UNKNOWN"
    opts = dict(channel_options())
    assert opts["grpc.enable_retries"] == 1
    assert json.loads(opts["grpc.service_config"]) == SERVICE_CONFIG
    assert SERVICE_CONFIG["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert resolve_timeout(None, 10.0) == 10.0 and resolve_timeout(float("inf"), 10.0) is None


def test_sdk_imports_no_torch_and_no_server() -> None:
    code = (
        "import sys, movierec.client; "
        "bad = [m for m in ('torch', 'movierec.server', 'movierec.trainer') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- cold start: profiles, upserted movies, side information ------------------------------------------------
def test_profile_requests() -> None:
    q = c.ratings_request(RatingsQuery({}, 5, profile={"age": 25, "gender": "f", "occupation": "student", "zip": 55105}))
    (one,) = q.queries
    assert len(one.ratings.movie_ids) == 0 and one.HasField("profile")
    assert (one.profile.age, one.profile.gender, one.profile.occupation, one.profile.zip_code) == (
        25, "f", "student", "55105"
    )  # the server checks the gender code (case-insensitive); the SDK passes it on
    # ratings=None: one query per profile; None entries carry no profile
    q = c.ratings_request(RatingsQuery(None, 3, profile=[{"zip_code": "02139"}, None, {"age": np.int64(40)}]))
    assert [x.HasField("profile") for x in q.queries] == [True, False, True]
    assert q.queries[0].profile.zip_code == "02139" and q.queries[2].profile.age == 40
    # one mapping is shared by every vector; a list gives one per vector and must match their number
    q = c.ratings_request(RatingsQuery([{1: 5.0}, {2: 4.0}], profile={"gender": "M"}))
    assert [x.profile.gender for x in q.queries] == ["M", "M"]
    with pytest.raises(ValueError, match="2 entries for 3 rating vectors"):
        c.ratings_request(RatingsQuery([{1: 5.0}, {2: 4.0}, {3: 1.0}], profile=[{"age": 3}, None]))
    # no profile, {} and only missing values all mean "no profile"; NaN age (pandas) = not given
    for none in (None, {}, {"age": None, "gender": None}, {"age": float("nan")}):
        assert not c.ratings_request(RatingsQuery({1: 4.0}, profile=none)).queries[0].HasField("profile")
    # ratings=None without a profile: one query with no ratings (the server answers the most popular movies)
    assert len(c.ratings_request(RatingsQuery(None)).queries) == 1
    assert c.is_single_query(None, {"age": 3}) and c.is_single_query({}, None)
    assert not c.is_single_query(None, [{"age": 3}]) and not c.is_single_query([{1: 2.0}])
    # predictions for a profile alone
    q = c.ratings_request(RatingsQuery(None, 0, predict=[7, 8], profile={"occupation": "writer"}))
    assert list(q.queries[0].predict_movie_ids) == [7, 8] and q.queries[0].profile.occupation == "writer"


def test_profile_validation_names_the_key() -> None:
    with pytest.raises(ValueError, match="unknown key 'agee'"):
        c.user_profile({"agee": 25})
    with pytest.raises(ValueError, match="unknown key 'zipcode'"):
        c.ratings_request(RatingsQuery({}, profile={"zipcode": "1"}))
    with pytest.raises(ValueError, match="'zip_code' given twice"):
        c.user_profile({"zip": "1", "zip_code": "2"})
    for bad, key in (({"age": "25"}, "age"), ({"age": 25.5}, "age"), ({"age": True}, "age"),
                     ({"gender": 1}, "gender"), ({"occupation": ["x"]}, "occupation")):  # fmt: skip
        with pytest.raises(TypeError, match=f"profile\\['{key}'\\]"):
            c.user_profile(bad)
    with pytest.raises(TypeError, match="mapping"):
        c.user_profile("age=25")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mapping"):
        c.profiles("age=25", 1)
    # ranges are the server's (INVALID_ARGUMENT): the SDK passes them on
    assert c.user_profile({"age": 200, "gender": "X"}) == types.UserProfile(age=200, gender="X")
    with pytest.raises(ValueError, match="out of range"):
        c.user_profile({"age": 2**40})


def test_upsert_requests_from_dicts_and_frames() -> None:
    import pandas as pd

    req = c.upsert_request([
        {"movie_id": 5000, "title": "New", "year": 2024, "genres": "Comedy|Drama"},
        {"movieId": np.int64(5001), "title": "Other", "genres": ["Action", " "]},
        {"item": 5002, "title": "Third", "year": None, "genres": None},
    ])  # fmt: skip
    m = req.movies
    assert [x.movie_id for x in m] == [5000, 5001, 5002]
    assert list(m[0].genres) == ["Comedy", "Drama"] and m[0].year == 2024
    assert list(m[1].genres) == ["Action"] and m[1].year == 0 and m[2].year == 0 and not m[2].genres
    frame = pd.DataFrame({"movieId": [7, 8], "title": ["A", "B"], "year": [1995, np.nan], "genres": ["X|Y", np.nan]})
    got = c.movie_list(frame)
    assert [(x.movie_id, x.title, x.year, list(x.genres)) for x in got] == [(7, "A", 1995, ["X", "Y"]), (8, "B", 0, [])]
    nullable = pd.DataFrame(
        {"item": pd.array([1, 2], dtype="Int64"), "title": ["a", "b"], "year": pd.array([None, 2000], dtype="Int64"),
         "genres": [["G"], []]}
    )  # fmt: skip
    assert [(x.movie_id, x.year, list(x.genres)) for x in c.movie_list(nullable)] == [(1, 0, ["G"]), (2, 2000, [])]
    assert c.upsert_request(pd.DataFrame({"movie_id": [3], "title": ["only"]})).movies[0].title == "only"


def test_upsert_validation() -> None:
    import pandas as pd

    with pytest.raises(ValueError, match="movie 0: unknown key 'name'"):
        c.movie_list([{"movie_id": 1, "name": "x"}])
    with pytest.raises(ValueError, match="unknown column\\(s\\) 'Title'"):
        c.movie_list(pd.DataFrame({"movie_id": [1], "Title": ["x"]}))
    with pytest.raises(ValueError, match="movie 1: no movie_id"):
        c.movie_list([{"movie_id": 1, "title": "a"}, {"title": "b"}])
    with pytest.raises(ValueError, match="movie 4: no title"):
        c.movie_list([{"movie_id": 4}])
    with pytest.raises(ValueError, match="given twice"):
        c.movie_list([{"movie_id": 4, "item": 4, "title": "a"}])
    with pytest.raises(TypeError, match="movie_id must be an integer"):
        c.movie_list([{"movie_id": "4", "title": "a"}])
    with pytest.raises(TypeError, match="movie 4: year must be an integer"):
        c.movie_list([{"movie_id": 4, "title": "a", "year": 1999.5}])
    with pytest.raises(TypeError, match="movie 4: genres"):
        c.movie_list([{"movie_id": 4, "title": "a", "genres": 3}])
    with pytest.raises(TypeError, match="list of mappings or a pandas DataFrame"):
        c.movie_list({"movie_id": 4, "title": "a"})  # type: ignore[arg-type]
    # values the server checks (ids > 0, years 1870..2100, empty lists, duplicates) pass through
    assert [x.movie_id for x in c.movie_list([{"movie_id": -1, "title": "a", "year": 1500}] * 2)] == [-1, -1]


def test_upsert_result_and_side_information() -> None:
    res = c.upsert_result(pb.UpsertMoviesResponse(model_version="v", added=2, updated=1, n_movies=83))
    assert (res.added, res.updated, res.n_movies, res.model_version) == (2, 1, 83, "v")
    resp = pb.GetModelInfoResponse(
        model=types.ModelInfo(
            version="v",
            side_information=types.SideInformation(
                profile_aware=True, metadata_aware=True, occupations=["student", "writer"], genres=["Comedy"],
                n_trained_movies=80, n_added_movies=3,
            ),
        ),
        limits=types.ServerLimits(max_users_per_call=5, max_k=80, max_movies_per_upsert=500),
    )  # fmt: skip
    info = c.model_info(resp)
    si = info.side_information
    assert si is not None and si.profile_aware and si.metadata_aware
    assert si.occupations == ("student", "writer") and si.genres == ("Comedy",)
    assert (si.n_trained_movies, si.n_added_movies) == (80, 3)
    assert info.limits.max_movies_per_upsert == 500 and info.limits.max_k == 80
    old = c.model_info(pb.GetModelInfoResponse(model=types.ModelInfo(version="v")))  # a server before the field
    assert old.side_information is None and old.limits.max_movies_per_upsert == 0


def test_clients_have_the_same_cold_start_api() -> None:
    import inspect

    from movierec.client import AsyncClient, Client

    for name in ("recommend_for_ratings", "predict", "upsert_movies", "model_info"):
        sync, aio = inspect.signature(getattr(Client, name)), inspect.signature(getattr(AsyncClient, name))
        assert list(sync.parameters) == list(aio.parameters), name
        assert getattr(Client, name).__doc__ and getattr(AsyncClient, name).__doc__
    assert "profile" in inspect.signature(Client.recommend_for_ratings).parameters


def test_rpc_errors_become_movierec_errors_with_their_status() -> None:
    aio = grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), details="user_ids: 9")
    err = MovieRecError.from_rpc_error(aio)
    assert err.code == grpc.StatusCode.NOT_FOUND and err.details == "user_ids: 9"
    bare = MovieRecError.from_rpc_error(grpc.RpcError("channel closed"))  # no status: UNKNOWN with its text
    assert bare.code == grpc.StatusCode.UNKNOWN and bare.details == "channel closed"
