"""Python values <-> movierec.v1 protos (shared by the sync and asyncio clients)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2

from movierec.client._errors import MovieRecError
from movierec.client._results import (
    IdsLike,
    ModelInfo,
    MovieMatches,
    Movies,
    MoviesLike,
    Predictions,
    ProfileLike,
    RatingScale,
    RatingsLike,
    RatingsQuery,
    Recommendation,
    Recommendations,
    RecommendQuery,
    ServerLimits,
    SideInformation,
    StreamResult,
    UpsertResult,
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


def is_single_query(ratings: Any, profile: Any = None) -> bool:
    """Whether `ratings` (with `profile`) describes one user: one vector, or no ratings and at most one profile."""
    if ratings is None:
        return profile is None or isinstance(profile, Mapping)
    return is_single_vector(ratings)


# UserProfile fields by the keys a profile mapping may use ("zip" is short for "zip_code").
PROFILE_KEYS: dict[str, str] = {"age": "age", "gender": "gender", "occupation": "occupation",
                                "zip_code": "zip_code", "zip": "zip_code"}  # fmt: skip


def _missing(value: Any) -> bool:
    """None, NaN and pandas' NA / NaT: "not given"."""
    if value is None:
        return True
    if isinstance(value, (str, bytes, Sequence, Mapping, np.ndarray)):
        return False
    try:
        return bool(value != value)  # NaN and pd.NA / NaT compare unequal (or ambiguous) to themselves
    except (TypeError, ValueError):
        return True


def user_profile(profile: ProfileLike | None) -> types.UserProfile | None:
    """A profile mapping as a UserProfile message (None for no profile: None, {} or only None / NaN values).
    Unknown keys, and values of the wrong
    type, are refused here (ValueError / TypeError naming the key); value ranges (age 1..120, gender F/M) are
    the server's to check (INVALID_ARGUMENT)."""
    if profile is None:
        return None
    if not isinstance(profile, Mapping):
        raise TypeError(f"profile must be a mapping of age, gender, occupation, zip_code; got {type(profile).__name__}")
    fields: dict[str, Any] = {}
    for key, value in profile.items():
        name = PROFILE_KEYS.get(key) if isinstance(key, str) else None
        if name is None:
            raise ValueError(f"profile: unknown key {key!r}; expected age, gender, occupation, zip_code (or zip)")
        if name in fields:
            raise ValueError(f"profile: {key!r} given twice (zip and zip_code are the same field)")
        if _missing(value):
            continue
        if name == "age":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
                raise TypeError(f"profile['age'] must be an integer number of years, got {value!r}")
            if isinstance(value, (float, np.floating)) and not float(value).is_integer():
                raise TypeError(f"profile['age'] must be an integer number of years, got {value!r}")
            if not -(2**31) <= int(value) < 2**31:
                raise ValueError(f"profile['age'] {value} is out of range (1..120)")
            fields[name] = int(value)
        elif name == "zip_code" and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            fields[name] = str(int(value))
        elif isinstance(value, str):
            fields[name] = value.strip()
        else:
            raise TypeError(f"profile[{key!r}] must be a string, got {value!r}")
    return types.UserProfile(**fields) if fields else None


def profiles(profile: Any, n: int) -> list[types.UserProfile | None]:
    """One profile (or None) per query: a mapping or None is shared by all `n`; a list gives one per query."""
    if profile is None or isinstance(profile, Mapping):
        one = user_profile(profile)
        return [one] * n
    if isinstance(profile, (str, bytes)) or not isinstance(profile, Sequence):
        raise TypeError(f"profile must be a mapping, a list of mappings or None; got {type(profile).__name__}")
    if len(profile) != n:
        raise ValueError(f"profile has {len(profile)} entries for {n} rating vectors (give one per vector)")
    return [user_profile(p) for p in profile]


def ratings_request(q: RatingsQuery) -> pb.RecommendForRatingsRequest:
    if q.ratings is None:  # no ratings: one query per profile (or a single one)
        n = 1 if q.profile is None or isinstance(q.profile, Mapping) else len(q.profile)
        vecs = [types.RatingVector() for _ in range(n)]
    else:
        vecs = vectors(q.ratings)
    profs = profiles(q.profile, len(vecs))
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
        queries=[
            pb.RatingsQuery(ratings=v, predict_movie_ids=m, profile=prof)
            for v, m, prof in zip(vecs, predict, profs, strict=True)
        ],
        k=int(q.k),
        exclude_movie_ids=ids(q.exclude).tolist(),
        include_movie_ids=ids(q.include).tolist(),
        include_titles=q.titles,
    )


# -- movies (UpsertMovies) ------------------------------------------------------------------------------------
# Movie fields by the keys / columns the SDK accepts: MovieLens' movieId and the trainer's item name the id.
MOVIE_KEYS: dict[str, str] = {"movie_id": "movie_id", "movieId": "movie_id", "item": "movie_id",
                              "title": "title", "year": "year", "genres": "genres"}  # fmt: skip


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)) and not (math.isfinite(value) and float(value).is_integer()):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    if not -(2**63) <= int(value) < 2**63:
        raise ValueError(f"{what} {value} is out of range")
    return int(value)


def movie(entry: Mapping[str, Any], position: int = 0) -> types.Movie:
    """One movie mapping as a Movie message: movie_id (or movieId / item) and title required; year optional
    (None / NaN / 0 = unknown); genres a list of names or one "A|B" string (None / NaN / "" = none)."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"movie {position}: expected a mapping of movie_id, title, year, genres; got {type(entry).__name__}")
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        name = MOVIE_KEYS.get(key) if isinstance(key, str) else None
        if name is None:
            raise ValueError(f"movie {position}: unknown key {key!r}; expected movie_id (or movieId, item), title, "
                             "year, genres")
        if name in fields:
            raise ValueError(f"movie {position}: the movie id is given twice ({key!r})")
        fields[name] = value
    where = f"movie {position}"
    if _missing(fields.get("movie_id")):
        raise ValueError(f"{where}: no movie_id")
    movie_id = _integer(fields["movie_id"], f"{where}: movie_id")
    where = f"movie {movie_id}"
    title = fields.get("title")
    if _missing(title):
        raise ValueError(f"{where}: no title")
    if not isinstance(title, str):
        raise TypeError(f"{where}: title must be a string, got {title!r}")
    year = fields.get("year")
    year_int = 0 if _missing(year) else _integer(year, f"{where}: year")
    if not -(2**31) <= year_int < 2**31:
        raise ValueError(f"{where}: year {year_int} is out of range (1870..2100, or 0 = unknown)")
    genres = fields.get("genres")
    genre_list: list[str]
    if isinstance(genres, str):
        genre_list = [g.strip() for g in genres.split("|") if g.strip()]
    elif _missing(genres):
        genre_list = []
    elif isinstance(genres, (Sequence, np.ndarray)) and all(isinstance(g, str) for g in genres):
        genre_list = [g.strip() for g in genres if g.strip()]
    else:
        raise TypeError(f"{where}: genres must be a list of names or an 'A|B' string, got {genres!r}")
    return types.Movie(movie_id=movie_id, title=title, year=year_int, genres=genre_list)


def movie_list(movies: MoviesLike) -> list[types.Movie]:
    """Movie messages from a list of mappings or a pandas DataFrame (columns as the mapping keys)."""
    import pandas as pd  # a base dependency; imported here, as in _results, to keep `import movierec.client` light

    if isinstance(movies, pd.DataFrame):
        frame = movies
        unknown = [str(col) for col in frame.columns if col not in MOVIE_KEYS]
        if unknown:
            raise ValueError(f"movies: unknown column(s) {', '.join(map(repr, unknown))}; expected movie_id "
                             "(or movieId, item), title, year, genres")
        records: Sequence[Mapping[str, Any]] = frame.to_dict(orient="records")
    elif isinstance(movies, (Mapping, str, bytes)) or not isinstance(movies, Iterable):
        raise TypeError(f"movies must be a list of mappings or a pandas DataFrame, got {type(movies).__name__}")
    else:
        records = list(movies)
    return [movie(entry, i) for i, entry in enumerate(records)]


def upsert_request(movies: MoviesLike) -> pb.UpsertMoviesRequest:
    return pb.UpsertMoviesRequest(movies=movie_list(movies))


def upsert_result(resp: pb.UpsertMoviesResponse) -> UpsertResult:
    return UpsertResult(
        added=int(resp.added), updated=int(resp.updated), n_movies=int(resp.n_movies),
        model_version=resp.model_version,
    )  # fmt: skip


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
        limits=ServerLimits(
            lim.max_users_per_call, lim.max_k, lim.max_message_bytes, lim.max_batch_size,
            lim.max_movies_per_upsert,
        ),  # fmt: skip
        rating_scale=(
            RatingScale(m.rating_scale.min, m.rating_scale.max, m.rating_scale.step)
            if m.HasField("rating_scale")
            else None
        ),
        side_information=side_information(m.side_information) if m.HasField("side_information") else None,
    )


def side_information(si: types.SideInformation) -> SideInformation:
    return SideInformation(
        profile_aware=si.profile_aware,
        metadata_aware=si.metadata_aware,
        occupations=tuple(si.occupations),
        genres=tuple(si.genres),
        n_trained_movies=int(si.n_trained_movies),
        n_added_movies=int(si.n_added_movies),
    )


def _movie_columns(resp: pb.GetMoviesResponse | pb.SearchMoviesResponse) -> dict[str, Any]:
    ms = resp.movies
    return {
        "movie_ids": np.fromiter((m.movie_id for m in ms), np.int64, len(ms)),
        "titles": [m.title for m in ms],
        "years": np.fromiter((m.year for m in ms), np.int64, len(ms)),
        "genres": [list(m.genres) for m in ms],
        "model_version": resp.model_version,
    }


def movies(resp: pb.GetMoviesResponse) -> Movies:
    return Movies(**_movie_columns(resp))


def search_request(query: str, limit: int) -> pb.SearchMoviesRequest:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    return pb.SearchMoviesRequest(query=query, limit=int(limit))


def movie_matches(resp: pb.SearchMoviesResponse) -> MovieMatches:
    return MovieMatches(**_movie_columns(resp), n_matches=int(resp.n_matches))


def health_status(resp: health_pb2.HealthCheckResponse) -> str:
    """grpc.health.v1 ServingStatus as its name: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
