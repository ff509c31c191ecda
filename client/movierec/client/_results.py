"""Plain result and query types of the SDK: dataclasses with numpy arrays, `.to_pandas()` where natural."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

    from movierec.client._errors import MovieRecError

IdsLike = int | Sequence[int] | npt.NDArray[np.integer]
# A rating vector: {movie_id: rating} or a (movie_ids, ratings) pair of sequences/arrays.
RatingsLike = Mapping[int, float] | tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]
# A user profile (cold start): {"age": 25, "gender": "F", "occupation": "student", "zip_code": "55105"},
# every key optional ("zip" is accepted for "zip_code"); None or {} = no profile.
ProfileLike = Mapping[str, Any]
# Movies for upsert_movies: dicts with movie_id, title, year, genres, or a pandas DataFrame of those columns.
MoviesLike = Union[Sequence[Mapping[str, Any]], "pd.DataFrame"]


@dataclass(frozen=True)
class Recommendation:
    """One ranked list, best first. `user_id` is None for an anonymous rating vector."""

    movie_ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    user_id: int | None = None
    titles: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.movie_ids.shape[0])

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        data: dict[str, Any] = {
            "rank": np.arange(1, len(self) + 1),
            "movie_id": self.movie_ids,
            "score": self.scores,
        }
        if self.titles is not None:
            data["title"] = list(self.titles)
        return pd.DataFrame(data)


@dataclass(frozen=True)
class Recommendations(Sequence[Recommendation]):
    """Lists in request order, with the version of the model that produced them."""

    lists: tuple[Recommendation, ...]
    model_version: str

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, i: int) -> Recommendation:  # type: ignore[override]
        return self.lists[i]

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self.lists)

    def to_pandas(self) -> pd.DataFrame:
        """Long format: one row per (list, rank); `query` is the list's position, `user_id` when known."""
        import pandas as pd

        frames = []
        for i, rec in enumerate(self.lists):
            df = rec.to_pandas()
            df.insert(0, "user_id", rec.user_id if rec.user_id is not None else pd.NA)
            df.insert(0, "query", i)
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["query", "user_id", "rank", "movie_id", "score"])
        return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Predictions:
    """Predicted ratings (stars, [1, 5]) for the requested movies, in request order."""

    movie_ids: npt.NDArray[np.int64]
    ratings: npt.NDArray[np.float32]
    model_version: str

    def __len__(self) -> int:
        return int(self.movie_ids.shape[0])

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.movie_ids.tolist(), self.ratings.tolist(), strict=True))

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"movie_id": self.movie_ids, "predicted_rating": self.ratings})


@dataclass(frozen=True)
class ServerLimits:
    """Limits the server enforces (requests beyond them are refused with INVALID_ARGUMENT)."""

    max_users_per_call: int
    max_k: int
    max_message_bytes: int
    max_batch_size: int
    max_movies_per_upsert: int = 0  # 0 from a server older than the field


@dataclass(frozen=True)
class SideInformation:
    """What the served model knows about users and movies besides ratings (cold start).

    `profile_aware`: profiles (the `profile=` of recommend_for_ratings / predict) are scored; otherwise they
    are accepted but only the ratings count. `metadata_aware`: movies added with `upsert_movies` are scored
    from their genres, year and title; otherwise they are candidates ranked after every trained movie.
    `occupations` / `genres`: the values the model knows (others are treated as not given).
    `n_trained_movies`: movies the model was trained on; `n_added_movies`: movies added while serving.
    """

    profile_aware: bool
    metadata_aware: bool
    occupations: tuple[str, ...]
    genres: tuple[str, ...]
    n_trained_movies: int
    n_added_movies: int


@dataclass(frozen=True)
class UpsertResult:
    """Answer of `upsert_movies`: movies new to the catalog (`added`), movies already there whose metadata
    was replaced (`updated`), the catalog size after the call, and the version of the model serving."""

    added: int
    updated: int
    n_movies: int
    model_version: str


@dataclass(frozen=True)
class RatingScale:
    """The ratings the served model accepts and predicts: min..max in steps of `step` (0: any value)."""

    min: float
    max: float
    step: float

    def __str__(self) -> str:
        span = f"{self.min:g}..{self.max:g}"
        return f"{span} step {self.step:g}" if self.step > 0 else f"{span} (any value)"


@dataclass(frozen=True)
class ModelInfo:
    version: str
    dataset: str
    rating_model: str
    ranking_model: str
    n_users: int
    n_items: int
    n_ratings: int
    metrics: dict[str, float]
    created_at: str
    training_seconds: float
    config: dict[str, Any]
    device: str
    limits: ServerLimits
    rating_scale: RatingScale | None = None  # None from a server older than the field
    side_information: SideInformation | None = None  # None from a server older than the field


@dataclass(frozen=True)
class Movies:
    """Catalog entries, columnar, in request order."""

    movie_ids: npt.NDArray[np.int64]
    titles: list[str]
    years: npt.NDArray[np.int64]
    genres: list[list[str]]
    model_version: str

    def __len__(self) -> int:
        return int(self.movie_ids.shape[0])

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {"movie_id": self.movie_ids, "title": self.titles, "year": self.years, "genres": self.genres}
        )


@dataclass(frozen=True)
class MovieMatches(Movies):
    """`search_movies`' answer: the matching movies, best match first, and how many matched in all (which may
    be more than were returned)."""

    n_matches: int = 0


@dataclass(frozen=True)
class RecommendQuery:
    """A `Recommend` request for `Client.stream`."""

    user_ids: IdsLike
    k: int = 10
    exclude: IdsLike = ()
    include: IdsLike = ()
    titles: bool = False
    request_id: str = ""


@dataclass(frozen=True)
class RatingsQuery:
    """A `RecommendForRatings` request for `Client.stream`: top-k (k > 0) and/or predictions.

    `ratings`: one rating vector, a list of them, or None (no ratings: the profile alone counts, or, with no
    profile either, the most popular movies). `profile`: one profile (shared by every vector), a list of
    profiles (one per vector; None entries = no profile), or None. With `ratings=None` and a list of
    profiles, there is one query per profile.
    """

    ratings: RatingsLike | Sequence[RatingsLike] | None
    k: int = 10
    predict: IdsLike | Sequence[IdsLike] = ()
    exclude: IdsLike = ()
    include: IdsLike = ()
    titles: bool = False
    request_id: str = ""
    profile: ProfileLike | Sequence[ProfileLike | None] | None = None


@dataclass(frozen=True)
class StreamResult:
    """One answer on a stream, tagged with the request_id it answers; exactly one outcome is set."""

    request_id: str
    recommendations: Recommendations | None = None
    predictions: list[Predictions] | None = None
    error: MovieRecError | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None
