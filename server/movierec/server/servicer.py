"""movierec.v1.RecommenderService: converts protos <-> numpy and delegates to the Engine; maps errors to status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc
import numpy as np

from movierec.core.features import MovieTable
from movierec.server import validation as v
from movierec.server.bulk import BulkScorer
from movierec.server.engine import Engine, TopK
from movierec.server.errors import ErrorCode, RequestError
from movierec.server.search import search_titles
from movierec.v1 import bulk_pb2 as bulk_pb
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecommenderService"].full_name


_NO_IDS = np.zeros(0, dtype=np.int64)
_NO_IDS.flags.writeable = False  # shared by every request that leaves a list empty


def _ids(field: Any) -> np.ndarray:
    n = len(field)
    return np.fromiter(field, dtype=np.int64, count=n) if n else _NO_IDS


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else asyncio.get_running_loop().time() + remaining


def _lists(
    top: TopK, user_ids: np.ndarray | None, titles: np.ndarray | None
) -> list[types.RecommendationList]:
    out = []
    movie_ids, scores = top.movie_ids.tolist(), top.scores.tolist()
    for r, n in enumerate(top.lengths.tolist()):
        msg = types.RecommendationList(
            user_id=int(user_ids[r]) if user_ids is not None else 0,
            movie_ids=movie_ids[r][:n],
            scores=scores[r][:n],
        )
        if titles is not None:
            msg.titles.extend(titles[top.items[r, :n]].tolist())
        out.append(msg)
    return out


def _profile_fields(queries: Any) -> v.ProfileFields | None:
    """The queries' UserProfile fields as arrays (validated by the engine); None when no query has one."""
    n = len(queries)
    has = np.fromiter((q.HasField("profile") for q in queries), bool, n)
    if not has.any():
        return None
    profiles = [q.profile for q in queries]
    return v.ProfileFields(
        has=has,
        age=np.fromiter((p.age for p in profiles), np.int64, n),
        gender=np.array([p.gender for p in profiles], dtype=object),
        occupation=np.array([p.occupation for p in profiles], dtype=object),
        zip_code=np.array([p.zip_code for p in profiles], dtype=object),
    )


def _movies(request: pb.UpsertMoviesRequest, limit: int) -> MovieTable:
    """The request's movies, validated (count, ids, titles, years, genres)."""
    movies = request.movies
    n = len(movies)
    v.check_count(n, limit, "movies")
    return v.movie_table(
        np.fromiter((m.movie_id for m in movies), np.int64, n),
        np.array([m.title for m in movies], dtype=object),
        np.fromiter((m.year for m in movies), np.int64, n),
        [list(m.genres) for m in movies],
        limit,
    )


def _movie_list(scorer: Any, idx: np.ndarray) -> list[types.Movie]:
    """Movie messages for dense catalog indices, in their order."""
    cat = scorer.catalog
    raw = scorer.items.raw[idx].tolist()
    years = np.asarray(cat.years)[idx].tolist()
    return [
        types.Movie(movie_id=m, title=cat.titles[i], year=int(y), genres=cat.genres[i])
        for m, i, y in zip(raw, idx.tolist(), years, strict=True)
    ]


class RecommenderServicer(pb_grpc.RecommenderServiceServicer):
    def __init__(self, engine: Engine, max_stream_inflight: int = 64) -> None:
        self.engine = engine
        self.max_stream_inflight = max_stream_inflight
        self.bulk = BulkScorer(engine)

    # -- conversions --------------------------------------------------------------------------------------
    async def _recommend(self, request: pb.RecommendRequest, deadline: float | None) -> pb.RecommendResponse:
        user_ids = _ids(request.user_ids)
        m = self.engine.model  # this call uses this model version to the end, even across a hot swap
        top = await self.engine.recommend(
            user_ids,
            request.k,
            _ids(request.exclude_movie_ids),
            _ids(request.include_movie_ids),
            titles=request.include_titles,
            deadline=deadline,
            model=m,
        )
        titles = m.titles if request.include_titles else None
        return pb.RecommendResponse(model_version=m.version, recommendations=_lists(top, user_ids, titles))

    async def _for_ratings(
        self, request: pb.RecommendForRatingsRequest, deadline: float | None
    ) -> pb.RecommendForRatingsResponse:
        queries = request.queries
        id_lengths = np.fromiter((len(q.ratings.movie_ids) for q in queries), np.int64, len(queries))
        rating_lengths = np.fromiter((len(q.ratings.ratings) for q in queries), np.int64, len(queries))
        predict_lengths = np.fromiter((len(q.predict_movie_ids) for q in queries), np.int64, len(queries))
        movie_ids = np.fromiter(
            (m for q in queries for m in q.ratings.movie_ids), np.int64, int(id_lengths.sum())
        )
        ratings = np.fromiter(
            (x for q in queries for x in q.ratings.ratings), np.float32, int(rating_lengths.sum())
        )
        predict_ids = np.fromiter(
            (m for q in queries for m in q.predict_movie_ids), np.int64, int(predict_lengths.sum())
        )
        m = self.engine.model
        top, preds = await self.engine.recommend_for_ratings(
            movie_ids,
            ratings,
            id_lengths,
            rating_lengths,
            predict_ids,
            predict_lengths,
            request.k,
            _ids(request.exclude_movie_ids),
            _ids(request.include_movie_ids),
            titles=request.include_titles,
            deadline=deadline,
            model=m,
            profiles=_profile_fields(queries),
        )
        results = [pb.RatingsResult() for _ in range(len(queries))]
        if top is not None:
            titles = m.titles if request.include_titles else None
            for res, lst in zip(results, _lists(top, None, titles), strict=True):
                res.recommendations.CopyFrom(lst)
        if preds is not None and predict_ids.size:
            bounds = np.concatenate([[0], np.cumsum(predict_lengths)]).tolist()
            pred_list, id_list = preds.tolist(), predict_ids.tolist()
            for r, res in enumerate(results):
                a, b = bounds[r], bounds[r + 1]
                if b > a:
                    res.predictions.movie_ids.extend(id_list[a:b])
                    res.predictions.ratings.extend(pred_list[a:b])
        return pb.RecommendForRatingsResponse(model_version=m.version, results=results)

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, err: RequestError) -> None:
        await context.abort(grpc.StatusCode[err.code.name], err.message)

    # -- RPCs ---------------------------------------------------------------------------------------------
    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        try:
            return await self._recommend(request, _deadline(context))
        except RequestError as err:
            await self._abort(context, err)
            raise  # unreachable: abort raises

    async def RecommendForRatings(
        self, request: pb.RecommendForRatingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendForRatingsResponse:
        try:
            return await self._for_ratings(request, _deadline(context))
        except RequestError as err:
            await self._abort(context, err)
            raise

    async def _one(
        self, request: pb.StreamRecommendRequest, deadline: float | None
    ) -> pb.StreamRecommendResponse:
        rid = request.request_id
        try:
            kind = request.WhichOneof("query")
            if kind == "recommend":
                return pb.StreamRecommendResponse(
                    request_id=rid, recommend=await self._recommend(request.recommend, deadline)
                )
            if kind == "recommend_for_ratings":
                res = await self._for_ratings(request.recommend_for_ratings, deadline)
                return pb.StreamRecommendResponse(request_id=rid, recommend_for_ratings=res)
            raise RequestError(
                ErrorCode.INVALID_ARGUMENT, "query: empty; set recommend or recommend_for_ratings"
            )
        except RequestError as err:
            return pb.StreamRecommendResponse(
                request_id=rid, error=pb.StreamError(code=err.code.value, message=err.message)
            )

    async def StreamRecommend(
        self, request_iterator: AsyncIterable[pb.StreamRecommendRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamRecommendResponse]:
        """Reads requests as they come, scores them concurrently (bounded), yields answers as they are ready."""
        deadline = _deadline(context)
        out: asyncio.Queue[pb.StreamRecommendResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self.max_stream_inflight)
        tasks: set[asyncio.Task[None]] = set()

        async def handle(req: pb.StreamRecommendRequest) -> None:
            try:
                await out.put(await self._one(req, deadline))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for req in request_iterator:
                    await (
                        slots.acquire()
                    )  # backpressure: stop reading while the stream has too much in flight
                    task = asyncio.create_task(handle(req))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.gather(*list(tasks), return_exceptions=True)
            finally:
                await out.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await out.get()) is not None:
                yield item
            await reader  # surface a reader failure
        finally:
            for t in [reader, *tasks]:
                t.cancel()
            for t in [reader, *tasks]:
                with contextlib.suppress(BaseException):
                    await t

    async def ScoreAll(
        self, request: bulk_pb.ScoreAllRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bulk_pb.ScoreAllChunk]:
        """Bulk scoring (movierec.server.bulk): chunks of consecutive users, paced by the client."""
        try:
            plan = self.bulk.plan(request)
        except RequestError as err:
            await self._abort(context, err)
            raise
        async for chunk in self.bulk.stream(plan):
            yield chunk

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        m = self.engine.model  # one consistent snapshot of the model and its catalog
        scorer = m.scorer
        info = scorer.info
        s = self.engine.settings
        model_types = dict(info.model_types)
        model = types.ModelInfo(
            version=str(info.version),
            dataset=str(info.dataset),
            rating_model=str(model_types.get("rating", "")),
            ranking_model=str(model_types.get("ranking", "")),
            n_users=int(info.n_users),
            n_items=int(m.n_items),
            n_ratings=int(info.n_ratings),
            metrics={str(k): float(v) for k, v in dict(info.metrics).items()},
            created_at=str(info.created_at),
            training_seconds=float(info.training_seconds),
            config_json=json.dumps(info.config, sort_keys=True, default=str),
            device=str(scorer.device),
            rating_scale=types.RatingScale(
                min=scorer.rating_scale.min, max=scorer.rating_scale.max, step=scorer.rating_scale.step
            ),
            side_information=types.SideInformation(
                profile_aware=bool(info.profile_aware),
                metadata_aware=bool(info.metadata_aware),
                occupations=info.features.values("occupation"),
                genres=info.features.values("genre"),
                n_trained_movies=int(scorer.n_trained),
                n_added_movies=len(scorer.added),
            ),
        )
        limits = types.ServerLimits(
            max_users_per_call=s.max_users_per_call,
            max_k=self.engine.max_k(m),
            max_message_bytes=s.max_message_bytes,
            max_batch_size=s.max_batch_size,
            max_movies_per_upsert=s.max_movies_per_upsert,
        )
        return pb.GetModelInfoResponse(model=model, limits=limits)

    async def GetMovies(
        self, request: pb.GetMoviesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMoviesResponse:
        m = self.engine.model
        scorer = m.scorer
        try:
            if len(request.movie_ids):
                idx = v.movies_to_index(_ids(request.movie_ids), scorer.items, "movie_ids", unique=False)
            else:
                idx = m.movies_by_id()  # the whole catalog, added movies included, in ascending id order
        except RequestError as err:
            await self._abort(context, err)
            raise
        return pb.GetMoviesResponse(model_version=m.version, movies=_movie_list(scorer, idx))

    async def SearchMovies(
        self, request: pb.SearchMoviesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchMoviesResponse:
        """Title search over the catalog (movierec.server.search), added movies included."""
        m = self.engine.model
        try:
            idx, n_matches = search_titles(m, request.query, request.limit, self.engine.settings.max_k)
        except RequestError as err:
            await self._abort(context, err)
            raise
        return pb.SearchMoviesResponse(
            model_version=m.version, movies=_movie_list(m.scorer, idx), n_matches=n_matches
        )

    async def UpsertMovies(
        self, request: pb.UpsertMoviesRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertMoviesResponse:
        """Add movies or update their metadata; they serve (and are persisted) once this returns."""
        try:
            movies = _movies(request, self.engine.settings.max_movies_per_upsert)
            result = await self.engine.upsert_movies(movies)
        except RequestError as err:
            await self._abort(context, err)
            raise
        return pb.UpsertMoviesResponse(
            model_version=result.model.version,
            added=result.added,
            updated=result.updated,
            n_movies=result.model.n_items,
        )
