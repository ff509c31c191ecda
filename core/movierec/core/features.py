"""Side information: user profiles and movie metadata, and their encoding into fixed feature vectors.

The vocabulary a model was trained with is its `FeatureSchema` (in the artifact's manifest): one name per
feature column, `field:value`, for example `gender:F`, `age:25-34`, `occupation:student`, `zip:9`,
`genre:Comedy`, `year:1990s`, `word:love`. Encoding looks names up in that vocabulary, so a value the model
never saw (an occupation, a genre, a title word) simply sets no column: it is treated as unknown, never an
error. Everything is vectorized over users / movies (pandas maps and explodes, no loop per row).

Users:  gender (F/M), ml-1m's seven age groups, their cross (the demographic segment, e.g. `segment:F|25-34`),
        occupation, first zip digit (US ZIP region).
Movies: genres, release decade, title words (the most frequent words of the training catalog).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

GENDERS: tuple[str, ...] = ("F", "M")
AGE_MIN, AGE_MAX = 1, 120
YEAR_MIN, YEAR_MAX = 1870, 2100
# ml-1m's age groups (under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56 and over): lower bounds and names
AGE_BOUNDS: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
AGE_GROUPS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
PROFILE_COLUMNS: tuple[str, ...] = ("user", "age", "gender", "occupation", "zip")
_WORD = re.compile(r"[a-z][a-z']+")
_STOP = frozenset(["the", "a", "an", "of", "and", "in", "on", "to", "for", "with", "at", "by", "from", "is", "it", "de", "la", "le", "les", "el"])
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


def age_group(age: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """The age group name of each age (years); "" for 0 (not given)."""
    a = np.asarray(age, dtype=np.int64)
    names = np.array(AGE_GROUPS, dtype=object)[np.searchsorted(np.array(AGE_BOUNDS), a, side="right")]
    return np.where(a > 0, names, "")


def decade(year: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """"1990s" etc.; everything before 1930 is "<1930"; "" for 0 (unknown)."""
    y = np.asarray(year, dtype=np.int64)
    d = (y // 10) * 10
    names = np.where(d < 1930, "<1930", pd.Series(d).astype(str).to_numpy(dtype=object) + "s")
    return np.where(y > 0, names, "")


def title_words(titles: pd.Series) -> pd.Series:
    """Lower-case words of each title (the "(1995)" suffix and stop words dropped): one list per title."""
    clean = titles.fillna("").astype(str).str.replace(_YEAR_SUFFIX, "", regex=True).str.lower()
    words = clean.str.findall(_WORD)
    return words.map(lambda ws: [w for w in ws if w not in _STOP])


def _segments(profiles: Profiles) -> npt.NDArray[np.object_]:
    """"F|25-34" etc. where both gender and age are given, else ""."""
    groups = age_group(profiles.age)
    both = (profiles.gender != "") & (groups != "")
    joined = pd.Series(profiles.gender, dtype=object) + "|" + pd.Series(groups, dtype=object)
    return np.where(both, joined.to_numpy(dtype=object), "")


@dataclass(frozen=True)
class Profiles:
    """User profiles, one row per user or query; "" / 0 = not given. `present` marks rows that had one."""

    age: IntArray
    gender: npt.NDArray[np.object_]
    occupation: npt.NDArray[np.object_]
    zip: npt.NDArray[np.object_]
    present: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.age.shape[0])

    @classmethod
    def empty(cls, n: int) -> Profiles:
        blank = np.full(n, "", dtype=object)
        return cls(np.zeros(n, np.int64), blank, blank.copy(), blank.copy(), np.zeros(n, bool))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Profiles:
        """From columns age, gender, occupation, zip (any may be missing; NaN = not given)."""
        n = len(frame)

        def text(name: str) -> npt.NDArray[np.object_]:
            if name not in frame:
                return np.full(n, "", dtype=object)
            return frame[name].fillna("").astype(str).str.strip().to_numpy(dtype=object)

        age = (
            pd.to_numeric(frame["age"], errors="coerce").fillna(0).astype(np.int64).to_numpy()
            if "age" in frame
            else np.zeros(n, np.int64)
        )
        gender, occupation, zips = text("gender"), text("occupation"), text("zip")
        gender = pd.Series(gender).str.upper().to_numpy(dtype=object)
        occupation = pd.Series(occupation).str.lower().to_numpy(dtype=object)
        present = (age > 0) | (gender != "") | (occupation != "") | (zips != "")
        return cls(age, gender, occupation, zips, np.asarray(present, dtype=bool))

    def take(self, rows: npt.ArrayLike) -> Profiles:
        r = np.asarray(rows, dtype=np.int64)
        return Profiles(self.age[r], self.gender[r], self.occupation[r], self.zip[r], self.present[r])

    @staticmethod
    def concat(parts: Sequence[Profiles]) -> Profiles:
        return Profiles(
            np.concatenate([p.age for p in parts]),
            np.concatenate([p.gender for p in parts]),
            np.concatenate([p.occupation for p in parts]),
            np.concatenate([p.zip for p in parts]),
            np.concatenate([p.present for p in parts]),
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"age": self.age, "gender": self.gender, "occupation": self.occupation, "zip": self.zip}
        )


@dataclass(frozen=True)
class MovieTable:
    """Movie metadata rows: ids, titles, years (0 = unknown) and genre lists, aligned."""

    movie_ids: IntArray
    titles: list[str]
    years: IntArray
    genres: list[list[str]]

    def __len__(self) -> int:
        return int(self.movie_ids.shape[0])

    @classmethod
    def empty(cls) -> MovieTable:
        return cls(np.zeros(0, np.int64), [], np.zeros(0, np.int64), [])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> MovieTable:
        """From a catalog frame: item, title, year, genres ("A|B" strings or lists)."""
        genres = [
            list(g) if isinstance(g, list | tuple | np.ndarray) else (str(g).split("|") if isinstance(g, str) and g else [])
            for g in frame["genres"]
        ]
        years = pd.to_numeric(frame["year"], errors="coerce").fillna(0).astype(np.int64).to_numpy()
        return cls(frame["item"].to_numpy(np.int64), [str(t) for t in frame["title"]], years, genres)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "item": self.movie_ids,
                "title": self.titles,
                "year": self.years,
                "genres": ["|".join(g) for g in self.genres],
            }
        )

    def merged(self, update: MovieTable) -> MovieTable:
        """This table with `update`'s rows replacing rows of the same id and the rest appended, sorted by id."""
        if len(update) == 0:
            return self
        keep = ~np.isin(self.movie_ids, update.movie_ids)
        ids = np.concatenate([self.movie_ids[keep], update.movie_ids])
        titles = [t for t, k in zip(self.titles, keep, strict=True) if k] + list(update.titles)
        years = np.concatenate([self.years[keep], update.years])
        genres = [g for g, k in zip(self.genres, keep, strict=True) if k] + list(update.genres)
        order = np.argsort(ids, kind="stable")
        return MovieTable(ids[order], [titles[i] for i in order], years[order], [genres[i] for i in order])

    def without(self, movie_ids: npt.ArrayLike) -> MovieTable:
        keep = ~np.isin(self.movie_ids, np.asarray(movie_ids, dtype=np.int64))
        idx = np.flatnonzero(keep)
        return MovieTable(
            self.movie_ids[idx], [self.titles[i] for i in idx], self.years[idx], [self.genres[i] for i in idx]
        )


@dataclass(frozen=True)
class FeatureSchema:
    """Side information a model was trained with: the names of its user and movie feature columns.

    Empty tuples: the model uses no side information (every artifact before cold start).
    """

    user_features: tuple[str, ...] = ()
    item_features: tuple[str, ...] = ()
    _user_index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _item_index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_user_index", {n: i for i, n in enumerate(self.user_features)})
        object.__setattr__(self, "_item_index", {n: i for i, n in enumerate(self.item_features)})

    def to_dict(self) -> dict[str, list[str]]:
        return {"user_features": list(self.user_features), "item_features": list(self.item_features)}

    @property
    def n_user_features(self) -> int:
        return len(self.user_features)

    @property
    def n_item_features(self) -> int:
        return len(self.item_features)

    def values(self, kind: str) -> list[str]:
        """The known values of one field, e.g. values("occupation") or values("genre")."""
        prefix = kind + ":"
        names = self.user_features if kind in ("gender", "age", "segment", "occupation", "zip") else self.item_features
        return [n[len(prefix) :] for n in names if n.startswith(prefix)]

    @classmethod
    def build(
        cls,
        profiles: Profiles | None,
        movies: MovieTable | None,
        *,
        max_words: int = 300,
        min_word_count: int = 5,
    ) -> FeatureSchema:
        """The vocabulary of the training data: every value seen (words: the `max_words` most frequent that
        occur in at least `min_word_count` titles)."""
        user: list[str] = []
        if profiles is not None and len(profiles) and profiles.present.any():
            user += [f"gender:{g}" for g in GENDERS if (profiles.gender == g).any()]
            groups = set(age_group(profiles.age).tolist())
            user += [f"age:{a}" for a in AGE_GROUPS if a in groups]
            segments = set(_segments(profiles).tolist())
            user += [f"segment:{g}|{a}" for g in GENDERS for a in AGE_GROUPS if f"{g}|{a}" in segments]
            user += [f"occupation:{o}" for o in sorted(set(profiles.occupation.tolist()) - {""})]
            regions = {z[0] for z in profiles.zip.tolist() if z[:1].isdigit()}
            user += [f"zip:{d}" for d in sorted(regions)]
        item: list[str] = []
        if movies is not None and len(movies):
            item += [f"genre:{g}" for g in sorted({g for gs in movies.genres for g in gs if g})]
            item += [f"year:{d}" for d in sorted(set(decade(movies.years).tolist()) - {""})]
            words = title_words(pd.Series(movies.titles)).map(set).explode().dropna()
            counts = words.value_counts()
            counts = counts[counts >= min_word_count]
            top = counts.sort_values(ascending=False, kind="stable").index[:max_words]
            item += [f"word:{w}" for w in sorted(top)]
        return cls(tuple(user), tuple(item))

    # -- encoding ----------------------------------------------------------------------------------------
    def encode_users(self, profiles: Profiles) -> FloatArray:
        """[n, n_user_features] multi-hot rows (0/1); unknown values set no column."""
        n = len(profiles)
        out = np.zeros((n, self.n_user_features), dtype=np.float32)
        if n == 0 or not self.n_user_features:
            return out
        zip_region = np.array([z[:1] if z[:1].isdigit() else "" for z in profiles.zip.tolist()], dtype=object)
        fields = (
            ("gender", profiles.gender),
            ("age", age_group(profiles.age)),
            ("segment", _segments(profiles)),
            ("occupation", profiles.occupation),
            ("zip", zip_region),
        )
        for name, values in fields:
            self._set(out, self._user_index, np.arange(n), name, values)
        return out

    def encode_items(self, movies: MovieTable) -> FloatArray:
        """[n, n_item_features] rows: genres and decade 0/1, title words 0/1; unknown values set no column."""
        n = len(movies)
        out = np.zeros((n, self.n_item_features), dtype=np.float32)
        if n == 0 or not self.n_item_features:
            return out
        rows = np.arange(n)
        self._set(out, self._item_index, rows, "year", decade(movies.years))
        genre_rows = np.repeat(rows, [len(g) for g in movies.genres])
        genres = np.array([g for gs in movies.genres for g in gs], dtype=object)
        self._set(out, self._item_index, genre_rows, "genre", genres)
        words = title_words(pd.Series(movies.titles)).explode().dropna()
        self._set(out, self._item_index, words.index.to_numpy(np.int64), "word", words.to_numpy(dtype=object))
        return out

    @staticmethod
    def _set(out: FloatArray, index: dict[str, int], rows: np.ndarray, name: str, values: np.ndarray) -> None:
        if rows.size == 0:
            return
        cols = pd.Series(name + ":" + pd.Series(values, dtype=object).astype(str)).map(index)
        known = cols.notna().to_numpy()
        out[rows[known], cols[known].to_numpy(np.int64)] = 1.0
