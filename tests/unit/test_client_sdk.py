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
