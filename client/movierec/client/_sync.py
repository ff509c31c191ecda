"""The blocking client."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from movierec.client import _bulk
from movierec.client import _convert as c
from movierec.client._errors import MovieRecError, translate_errors
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


class Client:
    """Blocking movierec client. `with Client("localhost:50051") as client: client.recommend([1, 2])`.

    Every call gets `timeout` seconds (per call override: `timeout=`; `math.inf` = none) and raises
    `MovieRecError` on failure. UNAVAILABLE is retried by gRPC's retry policy (see `_options`).
    """

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
    ) -> None:
        """TLS: `tls=True` (system roots) or `root_certificates=` (PEM bytes or path); mutual TLS adds
        `client_cert=`/`client_key=`. `target` may name several servers ("h1:p1,h2:p2" or a list, or a DNS
        name with several addresses): calls are spread over them with gRPC's round_robin. `token=` sends `authorization: Bearer <token>` on every call."""
        self.target = resolve_target(target)
        self.timeout = timeout
        self._channel = open_channel(
            target, credentials=credentials, options=options, tls=tls, root_certificates=root_certificates,
            client_cert=client_cert, client_key=client_key, token=token,
        )  # fmt: skip
        self._stub = pb_grpc.RecommenderServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _t(self, timeout: float | None) -> float | None:
        return resolve_timeout(timeout, self.timeout)

    # -- calls ----------------------------------------------------------------------------------------------
    def recommend(
        self,
        user_ids: IdsLike,
        k: int = 10,
        *,
        exclude: IdsLike = (),
        include: IdsLike = (),
        titles: bool = False,
        timeout: float | None = None,
    ) -> Recommendations:
        """Top-k for known users (one list per user id, in order); already-rated movies never appear."""
        req = c.recommend_request(RecommendQuery(user_ids, k, exclude, include, titles))
        with translate_errors():
            return c.recommendations(self._stub.Recommend(req, timeout=self._t(timeout)))

    def recommend_for_ratings(
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
        """Top-k for users described by what they rated and/or what they say about themselves (new users).

        ratings: one rating vector ({movie_id: rating} or a (movie_ids, ratings) pair), a list of them (one
            list each, in order), or {} / None: no ratings (the profile alone counts; with no profile either,
            the most popular movies). Ratings lie on `model_info().rating_scale`; rated movies are never
            recommended back.
        k: movies per list, 1..model_info().limits.max_k.
        profile: the user's profile, {"age": 25, "gender": "F", "occupation": "student", "zip_code": "55105"},
            every key optional ("zip" also works): age in years 1..120, gender "F"/"M", occupation and zip
            code as in the data set (values the model never saw are treated as not given). With several
            rating vectors: a list of profiles (one per vector; None = no profile), or one mapping shared by
            all; with `ratings=None` and a list of profiles, one list per profile. An unknown key raises
            ValueError here; an age or gender out of range is the server's INVALID_ARGUMENT (MovieRecError).
            `model_info().side_information.profile_aware` says whether the model scores profiles.
        exclude: movie ids never to recommend. include: when given, only these movies are candidates.
        titles: also return titles (`Recommendation.titles`). timeout: seconds (None = the client's default).
        """
        req = c.ratings_request(RatingsQuery(ratings, k, (), exclude, include, titles, profile=profile))
        with translate_errors():
            return c.ratings_recommendations(self._stub.RecommendForRatings(req, timeout=self._t(timeout)))

    @overload
    def predict(
        self,
        ratings: RatingsLike | None,
        movie_ids: IdsLike,
        *,
        profile: ProfileLike | None = None,
        timeout: float | None = None,
    ) -> Predictions: ...
    @overload
    def predict(
        self,
        ratings: Sequence[RatingsLike],
        movie_ids: IdsLike | Sequence[IdsLike],
        *,
        profile: ProfileLike | Sequence[ProfileLike | None] | None = None,
        timeout: float | None = None,
    ) -> list[Predictions]: ...
    @overload
    def predict(
        self,
        ratings: None,
        movie_ids: IdsLike | Sequence[IdsLike],
        *,
        profile: Sequence[ProfileLike | None],
        timeout: float | None = None,
    ) -> list[Predictions]: ...
    def predict(
        self, ratings: Any, movie_ids: Any, *, profile: Any = None, timeout: float | None = None
    ) -> Predictions | list[Predictions]:
        """Predicted ratings for `movie_ids`; one vector -> Predictions, a list of vectors -> a list.

        ratings, profile: as in `recommend_for_ratings` (ratings may be {} / None when a profile is given).
        movie_ids: the movies to predict (one list shared by every vector, or one list per vector).
        """
        req = c.ratings_request(RatingsQuery(ratings, 0, movie_ids, profile=profile))
        with translate_errors():
            out = c.predictions(self._stub.RecommendForRatings(req, timeout=self._t(timeout)))
        return out[0] if c.is_single_query(ratings, profile) else out

    def upsert_movies(self, movies: MoviesLike, *, timeout: float | None = None) -> UpsertResult:
        """Add movies to the served catalog, or replace the metadata of movies already in it.

        movies: a list of dicts, or a pandas DataFrame with those columns: `movie_id` (also `movieId` or
            `item`; > 0), `title` (non-empty), `year` (optional, 1870..2100; missing / NaN / 0 = unknown) and
            `genres` (optional, a list of names or one "Action|Comedy" string). Unknown keys or columns raise
            ValueError here. At most `model_info().limits.max_movies_per_upsert` movies per call.
        timeout: seconds (None = the client's default).

        From the moment this returns an added movie is a candidate of every recommendation call and shows
        in `movies()`; the model scores it from its metadata when `side_information.metadata_aware`.
        Returns the counts added / updated, the catalog size and the serving model's version. Needs the
        token when the server requires one; errors (INVALID_ARGUMENT, UNAUTHENTICATED, ...) raise
        MovieRecError.
        """
        req = c.upsert_request(movies)
        with translate_errors():
            return c.upsert_result(self._stub.UpsertMovies(req, timeout=self._t(timeout)))

    def stream(
        self, queries: Iterable[RecommendQuery | RatingsQuery], *, timeout: float | None = None
    ) -> Iterator[StreamResult]:
        """Send many queries on one stream; results come back as they are ready (not in order), tagged with
        each query's request_id (default: its position as a string). A failed query yields a result with
        `.error` set; a failed stream raises MovieRecError. Closing the iterator cancels the stream."""
        call = self._stub.StreamRecommend(c.stream_requests(queries), timeout=self._t(timeout))
        try:
            with translate_errors():
                for resp in call:
                    yield c.stream_result(resp)
        finally:
            call.cancel()

    def model_info(self, *, timeout: float | None = None) -> ModelInfo:
        """The served model (version, sizes, metrics, `rating_scale`, `side_information`: what it knows
        about users and movies besides ratings) and the server's `limits` (max_k, max_movies_per_upsert...)."""
        with translate_errors():
            return c.model_info(self._stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=self._t(timeout)))

    def iter_score_all(
        self,
        k: int = 10,
        *,
        shard: _bulk.ShardLike = None,
        user_range: _bulk.RangeLike = None,
        resume_from: bytes | None = None,
        chunk_users: int = 0,
        timeout: float | None = math.inf,
    ) -> Iterator[_bulk.BulkChunk]:
        """Bulk top-k of all users (or shard `(i, n)`/"i/n", or raw ids in [lo, hi)) as numpy chunks, in
        user order; `chunk.cursor` resumes after a chunk (`resume_from=`). No deadline by default."""
        req = _bulk.score_all_request(k, shard, user_range, resume_from, chunk_users)
        return _bulk.iter_call(self._stub, req, self._t(timeout))

    def score_all(
        self,
        k: int = 10,
        *,
        out: str | Path,
        shard: _bulk.ShardLike = None,
        user_range: _bulk.RangeLike = None,
        resume: bool = False,
        format: str | None = None,
        chunk_users: int = 0,
        progress: bool = True,
        timeout: float | None = math.inf,
    ) -> _bulk.ScoreAllResult:
        """Write bulk top-k to Parquet (default), CSV or TSV (`.csv`/`.tsv` or format=), long format
        user_id/rank/movie_id/score; `resume=True` continues an interrupted run (see movierec.client._bulk)."""
        return _bulk.score_all_sync(
            self._stub, self._t(timeout), k, out, shard=shard, user_range=user_range, resume=resume,
            fmt=format, chunk_users=chunk_users, progress=progress,
        )  # fmt: skip

    def movies(self, movie_ids: IdsLike = (), *, timeout: float | None = None) -> Movies:
        """Catalog entries for `movie_ids` (default: the whole catalog)."""
        req = pb.GetMoviesRequest(movie_ids=c.ids(movie_ids).tolist())
        with translate_errors():
            return c.movies(self._stub.GetMovies(req, timeout=self._t(timeout)))

    def search_movies(self, query: str, limit: int = 20, *, timeout: float | None = None) -> MovieMatches:
        """Movies whose titles hold every word of `query` (case- and accent-insensitive; added movies too),
        best match first: the exact title, then whole words, then word starts, then the rest, each by
        popularity. `limit` 0 means the server's default (20); at most the server's --max-k."""
        with translate_errors():
            return c.movie_matches(self._stub.SearchMovies(c.search_request(query, limit), timeout=self._t(timeout)))

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """grpc.health.v1 status: "SERVING", "NOT_SERVING", ... ("" = the whole server)."""
        with translate_errors():
            resp = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self._t(timeout))
        return c.health_status(resp)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Block until health() is SERVING (the server finished warm-up) or raise MovieRecError."""
        import time

        end = time.monotonic() + timeout
        last: MovieRecError | str = "no answer"
        while time.monotonic() < end:
            try:
                status = self.health(timeout=max(0.1, min(2.0, end - time.monotonic())))
                if status == "SERVING":
                    return
                last = status
            except MovieRecError as err:
                last = err
            time.sleep(0.05)
        raise MovieRecError(
            grpc.StatusCode.UNAVAILABLE, f"{self.target} not serving after {timeout}s: {last}"
        )
