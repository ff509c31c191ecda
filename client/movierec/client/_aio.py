"""The asyncio client (grpc.aio): the same methods as Client, awaitable."""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from movierec.client import _bulk
from movierec.client import _convert as c
from movierec.client._coalesce import RATINGS, RECOMMEND, Coalescer
from movierec.client._errors import translate_errors
from movierec.client._options import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT_S,
    PemLike,
    Targets,
    open_channel,
    resolve_target,
    resolve_timeout,
)
from movierec.client._results import (
    IdsLike,
    ModelInfo,
    MovieMatches,
    Movies,
    MoviesLike,
    Predictions,
    ProfileLike,
    RatingsLike,
    RatingsQuery,
    Recommendations,
    RecommendQuery,
    StreamResult,
    UpsertResult,
)
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc


class AsyncClient:
    """asyncio movierec client. `async with AsyncClient("localhost:50051") as client: await client.recommend(1)`."""

    def __init__(
        self,
        target: Targets = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        tls: bool = False,
        root_certificates: PemLike | None = None,
        client_cert: PemLike | None = None,
        client_key: PemLike | None = None,
        token: str | None = None,
        coalesce_ms: float | None = None,
        coalesce_max_users: int = 64,
    ) -> None:
        """TLS and token options as Client.

        `coalesce_ms` (off by default): concurrent `recommend` calls made within this many milliseconds of each
        other with the same k, exclude, include, titles and timeout go out as one `Recommend` RPC of up to
        `coalesce_max_users` users (`recommend_for_ratings` and `predict` likewise, as one
        `RecommendForRatings` of up to that many rating vectors) (lowered to the server's `--max-users-per-call` if that turns out smaller);
        each caller still gets only its own lists (or its own error). For services that call once per user of
        their own: the server's cost is per call far more than per user."""
        self.target = resolve_target(target)
        self.timeout = timeout
        self._channel = open_channel(
            target, aio=True, credentials=credentials, options=options, tls=tls,
            root_certificates=root_certificates, client_cert=client_cert, client_key=client_key, token=token,
        )  # fmt: skip
        self._stub = pb_grpc.RecommenderServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._coalescer: Coalescer[pb.RecommendRequest, pb.RecommendResponse] | None = None
        self._ratings_coalescer: Coalescer[pb.RecommendForRatingsRequest, pb.RecommendForRatingsResponse] | None = None
        if coalesce_ms is not None:
            window = coalesce_ms / 1000.0
            self._coalescer = Coalescer(
                self._send_recommend, window, coalesce_max_users, self._max_users_per_call, shape=RECOMMEND
            )
            self._ratings_coalescer = Coalescer(
                self._send_ratings, window, coalesce_max_users, self._max_users_per_call, shape=RATINGS
            )

    async def _send_recommend(self, request: pb.RecommendRequest, timeout: float | None) -> pb.RecommendResponse:
        return await self._stub.Recommend(request, timeout=timeout)

    async def _send_ratings(
        self, request: pb.RecommendForRatingsRequest, timeout: float | None
    ) -> pb.RecommendForRatingsResponse:
        return await self._stub.RecommendForRatings(request, timeout=timeout)

    async def _ratings(self, request: pb.RecommendForRatingsRequest, timeout: float | None) -> pb.RecommendForRatingsResponse:
        if self._ratings_coalescer is not None:
            return await self._ratings_coalescer.call(request, timeout)
        return await self._stub.RecommendForRatings(request, timeout=timeout)

    async def _max_users_per_call(self) -> int:
        info = await self._stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=self._t(None))
        return int(info.limits.max_users_per_call)

    async def close(self) -> None:
        for co in (self._coalescer, self._ratings_coalescer):
            if co is not None:
                await co.aclose()  # calls waiting for company go out before the channel closes
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _t(self, timeout: float | None) -> float | None:
        return resolve_timeout(timeout, self.timeout)

    async def recommend(
        self,
        user_ids: IdsLike,
        k: int = 10,
        *,
        exclude: IdsLike = (),
        include: IdsLike = (),
        titles: bool = False,
        timeout: float | None = None,
    ) -> Recommendations:
        req = c.recommend_request(RecommendQuery(user_ids, k, exclude, include, titles))
        with translate_errors():
            if self._coalescer is not None:
                return c.recommendations(await self._coalescer.call(req, self._t(timeout)))
            return c.recommendations(await self._stub.Recommend(req, timeout=self._t(timeout)))

    async def recommend_for_ratings(
        self,
        ratings: RatingsLike | Sequence[RatingsLike] | None,
        k: int = 10,
        *,
        profile: ProfileLike | Sequence[ProfileLike | None] | None = None,
        exclude: IdsLike = (),
        include: IdsLike = (),
        titles: bool = False,
        timeout: float | None = None,
    ) -> Recommendations:
        """As Client.recommend_for_ratings: top-k for rating vectors ({} / None: no ratings) and/or profiles
        ({"age": 25, "gender": "F", "occupation": "student", "zip_code": "55105"}, one per vector)."""
        req = c.ratings_request(RatingsQuery(ratings, k, (), exclude, include, titles, profile=profile))
        with translate_errors():
            return c.ratings_recommendations(await self._ratings(req, self._t(timeout)))

    async def predict(
        self, ratings: Any, movie_ids: Any, *, profile: Any = None, timeout: float | None = None
    ) -> Predictions | list[Predictions]:
        """As Client.predict: predicted ratings for `movie_ids` from rating vectors and/or profiles."""
        req = c.ratings_request(RatingsQuery(ratings, 0, movie_ids, profile=profile))
        with translate_errors():
            out = c.predictions(await self._ratings(req, self._t(timeout)))
        return out[0] if c.is_single_query(ratings, profile) else out

    async def upsert_movies(self, movies: MoviesLike, *, timeout: float | None = None) -> UpsertResult:
        """As Client.upsert_movies: add movies (dicts or a DataFrame of movie_id, title, year, genres) to the
        served catalog or update their metadata; returns added / updated / n_movies / model_version."""
        req = c.upsert_request(movies)
        with translate_errors():
            return c.upsert_result(await self._stub.UpsertMovies(req, timeout=self._t(timeout)))

    async def stream(
        self,
        queries: Iterable[RecommendQuery | RatingsQuery] | AsyncIterable[RecommendQuery | RatingsQuery],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[StreamResult]:
        """As Client.stream; `queries` may be a plain or an async iterable."""

        async def requests() -> AsyncIterator[pb.StreamRecommendRequest]:
            i = 0
            if isinstance(queries, AsyncIterable):
                async for q in queries:
                    yield c.stream_request(q, q.request_id or str(i))
                    i += 1
            else:
                for req in c.stream_requests(queries):
                    yield req

        call = self._stub.StreamRecommend(requests(), timeout=self._t(timeout))
        try:
            with translate_errors():
                async for resp in call:
                    yield c.stream_result(resp)
        finally:
            call.cancel()

    def iter_score_all(
        self,
        k: int = 10,
        *,
        shard: _bulk.ShardLike = None,
        user_range: _bulk.RangeLike = None,
        resume_from: bytes | None = None,
        chunk_users: int = 0,
        timeout: float | None = math.inf,
    ) -> AsyncIterator[_bulk.BulkChunk]:
        """As Client.iter_score_all: `async for chunk in client.iter_score_all(10): ...`."""
        req = _bulk.score_all_request(k, shard, user_range, resume_from, chunk_users)
        return _bulk.aiter_call(self._stub, req, self._t(timeout))

    async def score_all(
        self,
        k: int = 10,
        *,
        out: str | Path,
        shard: _bulk.ShardLike = None,
        user_range: _bulk.RangeLike = None,
        resume: bool = False,
        format: str | None = None,
        chunk_users: int = 0,
        timeout: float | None = math.inf,
    ) -> _bulk.ScoreAllResult:
        """As Client.score_all (no progress bar); file writes run in a worker thread."""
        return await _bulk.score_all_async(
            self._stub, self._t(timeout), k, out, shard=shard, user_range=user_range, resume=resume,
            fmt=format, chunk_users=chunk_users,
        )  # fmt: skip

    async def model_info(self, *, timeout: float | None = None) -> ModelInfo:
        """As Client.model_info (side_information, limits.max_movies_per_upsert included)."""
        with translate_errors():
            return c.model_info(
                await self._stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=self._t(timeout))
            )

    async def movies(self, movie_ids: IdsLike = (), *, timeout: float | None = None) -> Movies:
        req = pb.GetMoviesRequest(movie_ids=c.ids(movie_ids).tolist())
        with translate_errors():
            return c.movies(await self._stub.GetMovies(req, timeout=self._t(timeout)))

    async def search_movies(self, query: str, limit: int = 20, *, timeout: float | None = None) -> MovieMatches:
        """As Client.search_movies."""
        with translate_errors():
            return c.movie_matches(await self._stub.SearchMovies(c.search_request(query, limit), timeout=self._t(timeout)))

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        with translate_errors():
            resp = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=self._t(timeout)
            )
        return c.health_status(resp)
