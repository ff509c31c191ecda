"""Python values <-> movierec.v1 protos (shared by the sync and asyncio clients)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2

from movierec.client._errors import MovieRecError
from movierec.client._results import (
    IdsLike,
    ModelInfo,
    Movies,
    Predictions,
    RatingScale,
    RatingsLike,
    RatingsQuery,
    Recommendation,
    Recommendations,
    RecommendQuery,
    ServerLimits,
    StreamResult,
)
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import types_pb2 as types


def ids(value: IdsLike) -> npt.NDArray[np.int64]:
    arr = np.asarray(value)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"expected integer ids, got {arr.dtype}")
    return arr.astype(np.int64, copy=False).ravel()


def is_single_vector(ratings: Any) -> bool:
    if isinstance(ratings, Mapping):
        return True
    return (
        isinstance(ratings, tuple)
        and len(ratings) == 2
        and not isinstance(ratings[0], (Mapping, tuple))
        and (np.ndim(ratings[0]) == 1)
        and not (len(ratings[0]) and isinstance(ratings[0][0], (Mapping, tuple)))
    )


def rating_vector(ratings: RatingsLike) -> types.RatingVector:
    if isinstance(ratings, Mapping):
        movie_ids = [int(m) for m in ratings]
        values = [float(r) for r in ratings.values()]
    else:
        movie_ids_arr, values_arr = ratings
        movie_ids = ids(movie_ids_arr).tolist()
        values = np.asarray(values_arr, dtype=np.float32).ravel().tolist()
    return types.RatingVector(movie_ids=movie_ids, ratings=values)


def vectors(ratings: RatingsLike | Sequence[RatingsLike]) -> list[types.RatingVector]:
    if is_single_vector(ratings):
        return [rating_vector(ratings)]  # type: ignore[arg-type]
    return [rating_vector(r) for r in ratings]  # type: ignore[arg-type,union-attr]


def recommend_request(q: RecommendQuery) -> pb.RecommendRequest:
    return pb.RecommendRequest(
        user_ids=ids(q.user_ids).tolist(),
        k=int(q.k),
        exclude_movie_ids=ids(q.exclude).tolist(),
        include_movie_ids=ids(q.include).tolist(),
        include_titles=q.titles,
    )


def ratings_request(q: RatingsQuery) -> pb.RecommendForRatingsRequest:
    vecs = vectors(q.ratings)
    predict: list[list[int]]
    p = q.predict
    if isinstance(p, (int, np.integer)):
        p = [int(p)]
    if len(p) and not np.isscalar(p[0]):  # type: ignore[arg-type,index]
        predict = [ids(x).tolist() for x in p]  # type: ignore[union-attr]
        if len(predict) != len(vecs):
            raise ValueError(f"predict has {len(predict)} lists for {len(vecs)} rating vectors")
    else:
        shared = ids(p).tolist()  # type: ignore[arg-type]
        predict = [shared] * len(vecs)
    return pb.RecommendForRatingsRequest(
        queries=[pb.RatingsQuery(ratings=v, predict_movie_ids=m) for v, m in zip(vecs, predict, strict=True)],
        k=int(q.k),
        exclude_movie_ids=ids(q.exclude).tolist(),
        include_movie_ids=ids(q.include).tolist(),
        include_titles=q.titles,
    )


def recommendation(msg: types.RecommendationList, user: bool) -> Recommendation:
    return Recommendation(
        movie_ids=np.array(msg.movie_ids, dtype=np.int64),
        scores=np.array(msg.scores, dtype=np.float32),
        user_id=int(msg.user_id) if user else None,
        titles=tuple(msg.titles) if len(msg.titles) else None,
    )


def recommendations(resp: pb.RecommendResponse) -> Recommendations:
    return Recommendations(tuple(recommendation(r, True) for r in resp.recommendations), resp.model_version)


def ratings_recommendations(resp: pb.RecommendForRatingsResponse) -> Recommendations:
    return Recommendations(
        tuple(recommendation(r.recommendations, False) for r in resp.results), resp.model_version
    )


def predictions(resp: pb.RecommendForRatingsResponse) -> list[Predictions]:
    return [
        Predictions(
            np.array(r.predictions.movie_ids, dtype=np.int64),
            np.array(r.predictions.ratings, dtype=np.float32),
            resp.model_version,
        )
        for r in resp.results
    ]


def stream_request(q: RecommendQuery | RatingsQuery, request_id: str) -> pb.StreamRecommendRequest:
    if isinstance(q, RecommendQuery):
        return pb.StreamRecommendRequest(request_id=request_id, recommend=recommend_request(q))
    if isinstance(q, RatingsQuery):
        return pb.StreamRecommendRequest(request_id=request_id, recommend_for_ratings=ratings_request(q))
    raise TypeError(f"stream() takes RecommendQuery or RatingsQuery items, got {type(q).__name__}")


def stream_requests(queries: Iterable[RecommendQuery | RatingsQuery]) -> Iterable[pb.StreamRecommendRequest]:
    for i, q in enumerate(queries):
        yield stream_request(q, q.request_id or str(i))


def stream_result(resp: pb.StreamRecommendResponse) -> StreamResult:
    kind = resp.WhichOneof("result")
    if kind == "recommend":
        return StreamResult(resp.request_id, recommendations=recommendations(resp.recommend))
    if kind == "recommend_for_ratings":
        r = resp.recommend_for_ratings
        has_top = any(x.HasField("recommendations") for x in r.results)
        has_pred = any(x.HasField("predictions") for x in r.results)
        return StreamResult(
            resp.request_id,
            recommendations=ratings_recommendations(r) if has_top else None,
            predictions=predictions(r) if has_pred else None,
        )
    err = resp.error
    return StreamResult(resp.request_id, error=MovieRecError.from_code_number(err.code, err.message))


def model_info(resp: pb.GetModelInfoResponse) -> ModelInfo:
    m, lim = resp.model, resp.limits
    return ModelInfo(
        version=m.version,
        dataset=m.dataset,
        rating_model=m.rating_model,
        ranking_model=m.ranking_model,
        n_users=m.n_users,
        n_items=m.n_items,
        n_ratings=m.n_ratings,
        metrics=dict(m.metrics),
        created_at=m.created_at,
        training_seconds=m.training_seconds,
        config=json.loads(m.config_json) if m.config_json else {},
        device=m.device,
        limits=ServerLimits(lim.max_users_per_call, lim.max_k, lim.max_message_bytes, lim.max_batch_size),
        rating_scale=(
            RatingScale(m.rating_scale.min, m.rating_scale.max, m.rating_scale.step)
            if m.HasField("rating_scale")
            else None
        ),
    )


def movies(resp: pb.GetMoviesResponse) -> Movies:
    ms = resp.movies
    return Movies(
        movie_ids=np.fromiter((m.movie_id for m in ms), np.int64, len(ms)),
        titles=[m.title for m in ms],
        years=np.fromiter((m.year for m in ms), np.int64, len(ms)),
        genres=[list(m.genres) for m in ms],
        model_version=resp.model_version,
    )


def health_status(resp: health_pb2.HealthCheckResponse) -> str:
    """grpc.health.v1 ServingStatus as its name: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
