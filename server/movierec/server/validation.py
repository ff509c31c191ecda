"""Request validation: raw ids/ratings (numpy arrays) -> dense indices / Csr, or a RequestError.

Every check is vectorized over the whole request (no Python loop per item); error messages name the field,
the position of the first offending entry and the allowed range. Ratings are checked against the serving
model's own rating scale (from its artifact): there is no rating range of the server's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from movierec.core.artifact import RatingScale
from movierec.core.features import AGE_MAX, AGE_MIN, GENDERS, YEAR_MAX, YEAR_MIN, MovieTable, Profiles
from movierec.core.sparse import Csr, IdMap
from movierec.server.errors import ErrorCode, RequestError, invalid

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
ObjectArray = npt.NDArray[np.object_]

MAX_ZIP_CHARS = 16  # UserProfile.zip_code
MAX_OCCUPATION_CHARS = 100  # UserProfile.occupation
MAX_TITLE_CHARS = 1000  # Movie.title (UpsertMovies): bounds every response that carries titles
MAX_GENRES = 32  # Movie.genres per movie (UpsertMovies)
MAX_GENRE_CHARS = 100  # one genre name (UpsertMovies)

def check_count(n: int, limit: int, field: str) -> None:
    """1 <= n <= limit, else INVALID_ARGUMENT."""
    if n == 0:
        raise invalid(f"{field}: empty request; give between 1 and {limit} entries")
    if n > limit:
        raise invalid(f"{field}: {n} entries in one call; the limit is {limit} (split the request)")


def check_k(k: int, n_items: int, *, allow_zero: bool = False, what: str = "the catalog size") -> None:
    low = 0 if allow_zero else 1
    if not low <= k <= n_items:
        raise invalid(f"k: {k} is out of range; allowed {low} <= k <= {n_items} ({what})")


def users_to_index(user_ids: IntArray, users: IdMap, field: str = "user_ids") -> IntArray:
    """Dense user indices; an unknown user id -> NOT_FOUND."""
    idx = users.to_index(user_ids)
    unknown = np.flatnonzero(idx < 0)
    if unknown.size:
        i = int(unknown[0])
        raise RequestError(
            ErrorCode.NOT_FOUND,
            f"{field}[{i}]: unknown user id {int(user_ids[i])} ({unknown.size} unknown in this request); "
            f"the model knows {len(users)} users",
        )
    return idx


def movies_to_index(movie_ids: IntArray, items: IdMap, field: str, *, unique: bool = True) -> IntArray:
    """Dense item indices of a flat list of movie ids; not in the catalog or duplicated -> INVALID_ARGUMENT."""
    idx = items.to_index(movie_ids)
    unknown = np.flatnonzero(idx < 0)
    if unknown.size:
        i = int(unknown[0])
        raise invalid(
            f"{field}[{i}]: movie id {int(movie_ids[i])} is not in the catalog "
            f"({unknown.size} unknown in this field; {len(items)} movies in the catalog)"
        )
    if unique and idx.size > 1:
        _first_duplicate(idx, np.zeros(idx.size, dtype=np.int64), movie_ids, lambda _r, j: f"{field}[{j}]")
    return idx


def _first_duplicate(idx: IntArray, rows: IntArray, raw: IntArray, name: object) -> None:
    """Raise INVALID_ARGUMENT on the first (row, idx) pair that occurs twice (vectorized sort + compare)."""
    order = np.lexsort((idx, rows))
    s_idx, s_rows = idx[order], rows[order]
    dup = np.flatnonzero((s_idx[1:] == s_idx[:-1]) & (s_rows[1:] == s_rows[:-1]))
    if dup.size:
        j = int(order[dup[0] + 1])
        label = name(int(rows[j]), j)  # type: ignore[operator]
        raise invalid(f"{label}: duplicate movie id {int(raw[j])}; each movie may appear once")


def lengths_to_indptr(lengths: IntArray) -> IntArray:
    indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return indptr


def rating_vectors(
    movie_ids: IntArray,
    ratings: FloatArray,
    id_lengths: IntArray,
    rating_lengths: IntArray,
    items: IdMap,
    scale: RatingScale,
    field: str = "queries",
) -> Csr:
    """Validate concatenated rating vectors (row r has id_lengths[r] entries) and build a dense-index Csr.

    Every rating must lie on `scale` (the model's rating scale: within min..max and on its step).
    """
    mismatch = np.flatnonzero(id_lengths != rating_lengths)
    if mismatch.size:
        r = int(mismatch[0])
        raise invalid(
            f"{field}[{r}].ratings: {int(id_lengths[r])} movie_ids but {int(rating_lengths[r])} ratings; "
            "the two lists must have the same length"
        )
    indptr = lengths_to_indptr(id_lengths)
    rows = np.repeat(np.arange(id_lengths.size, dtype=np.int64), id_lengths)

    def label(r: int, j: int, sub: str) -> str:
        return f"{field}[{r}].ratings.{sub}[{j - int(indptr[r])}]"

    bad = np.flatnonzero(~scale.contains(ratings))
    if bad.size:
        j = int(bad[0])
        raise invalid(
            f"{label(int(rows[j]), j, 'ratings')}: {_shown(float(ratings[j]))} is not on the model's rating "
            f"scale {scale} ({bad.size} off the scale in this request)"
        )
    idx = items.to_index(movie_ids)
    unknown = np.flatnonzero(idx < 0)
    if unknown.size:
        j = int(unknown[0])
        raise invalid(
            f"{label(int(rows[j]), j, 'movie_ids')}: movie id {int(movie_ids[j])} is not in the catalog "
            f"({len(items)} movies in the catalog)"
        )
    _first_duplicate(idx, rows, movie_ids, lambda r, j: label(r, j, "movie_ids"))
    return Csr.from_coo(rows, idx, ratings.astype(np.float32), id_lengths.size, len(items))


def _shown(value: float) -> str:
    """A float32 rating as the caller wrote it: 3.3, not 3.299999952316284."""
    return np.format_float_positional(np.float32(value), trim="-") if np.isfinite(value) else repr(value)


def target_lists(movie_ids: IntArray, lengths: IntArray, items: IdMap, field: str = "queries") -> Csr:
    """Validate concatenated predict_movie_ids lists; the Csr keeps the request order within each row."""
    indptr = lengths_to_indptr(lengths)
    rows = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)

    def label(r: int, j: int) -> str:
        return f"{field}[{r}].predict_movie_ids[{j - int(indptr[r])}]"

    idx = items.to_index(movie_ids)
    unknown = np.flatnonzero(idx < 0)
    if unknown.size:
        j = int(unknown[0])
        raise invalid(f"{label(int(rows[j]), j)}: movie id {int(movie_ids[j])} is not in the catalog")
    _first_duplicate(idx, rows, movie_ids, label)
    return Csr(indptr, idx, np.ones(idx.size, dtype=np.float32), len(items))


def varint_size(value: int) -> int:
    return max(1, (max(int(value), 0).bit_length() + 6) // 7) if value >= 0 else 10


def response_bytes_bound(n_lists: int, k: int, max_movie_id: int, max_title_bytes: int, titles: bool) -> int:
    """An upper bound on the encoded size of n_lists RecommendationLists of k entries."""
    per_entry = varint_size(max_movie_id) + 4 + (max_title_bytes + 3 if titles else 0)
    return 64 + n_lists * (32 + k * per_entry)


# -- side information ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileFields:
    """The UserProfile fields of a request's queries as read from the protos, one entry per query.

    `has[r]`: query r carried the `profile` field; the other arrays hold its raw values (zero values for
    queries without one)."""

    has: npt.NDArray[np.bool_]
    age: IntArray
    gender: ObjectArray
    occupation: ObjectArray
    zip_code: ObjectArray


def _lengths(values: ObjectArray) -> IntArray:
    return np.asarray(pd.Series(values, dtype=object).str.len().fillna(0).to_numpy(), dtype=np.int64)


def _text(values: ObjectArray) -> pd.Series:
    return pd.Series(values, dtype=object).astype(str).str.strip()


def profiles(fields: ProfileFields, field: str = "queries") -> Profiles | None:
    """Validate the queries' profiles (vectorized over the request); None when no query carries one.

    age 1..120 or 0 (not given); gender "F"/"M" in any case or "" (not given); zip_code at most 16
    characters; occupation free text (one the model does not know is treated as not given).
    `present` is true for queries that carried a profile with at least one field given."""
    if not fields.has.any():
        return None
    age = fields.age
    bad = np.flatnonzero((age != 0) & ((age < AGE_MIN) | (age > AGE_MAX)))
    if bad.size:
        r = int(bad[0])
        raise invalid(
            f"{field}[{r}].profile.age: {int(age[r])} is out of range; allowed {AGE_MIN}..{AGE_MAX}, "
            "or 0 for not given"
        )
    gender = _text(fields.gender).str.upper()
    bad = np.flatnonzero(~gender.isin(["", *GENDERS]).to_numpy())
    if bad.size:
        r = int(bad[0])
        allowed = " or ".join(f'"{g}"' for g in GENDERS)
        raise invalid(
            f"{field}[{r}].profile.gender: {fields.gender[r]!r} is not a gender code; allowed {allowed} "
            '(case-insensitive), or "" for not given'
        )
    for name, values, limit in (
        ("zip_code", fields.zip_code, MAX_ZIP_CHARS),
        ("occupation", fields.occupation, MAX_OCCUPATION_CHARS),
    ):
        n = _lengths(values)
        bad = np.flatnonzero(n > limit)
        if bad.size:
            r = int(bad[0])
            raise invalid(f"{field}[{r}].profile.{name}: {int(n[r])} characters; at most {limit}")
    occupation = _text(fields.occupation).str.lower()
    zips = _text(fields.zip_code)
    given = (age > 0) | (gender != "").to_numpy() | (occupation != "").to_numpy() | (zips != "").to_numpy()
    return Profiles(
        age.astype(np.int64, copy=False),
        gender.to_numpy(dtype=object),
        occupation.to_numpy(dtype=object),
        zips.to_numpy(dtype=object),
        np.asarray(fields.has & given, dtype=bool),
    )


def movie_table(
    movie_ids: IntArray,
    titles: ObjectArray,
    years: IntArray,
    genres: list[list[str]],
    limit: int,
    field: str = "movies",
) -> MovieTable:
    """Validate the movies of an UpsertMovies request (vectorized) into a MovieTable (titles and genre names
    stripped of surrounding blanks, empty genre names dropped).

    1..limit movies; movie_id > 0 and unique; title not blank, at most MAX_TITLE_CHARS characters; year
    1870..2100 or 0 (unknown); at most MAX_GENRES genres of at most MAX_GENRE_CHARS characters each. A genre
    the model does not know is accepted (kept for display, ignored by the model)."""
    check_count(movie_ids.size, limit, field)
    bad = np.flatnonzero(movie_ids <= 0)
    if bad.size:
        i = int(bad[0])
        raise invalid(f"{field}[{i}].movie_id: {int(movie_ids[i])}; a movie id must be > 0")
    order = np.argsort(movie_ids, kind="stable")
    dup = np.flatnonzero(movie_ids[order][1:] == movie_ids[order][:-1])
    if dup.size:
        first, second = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise invalid(
            f"{field}[{second}].movie_id: duplicate movie id {int(movie_ids[second])} (also {field}[{first}]); "
            "each movie may appear once per call"
        )
    clean = _text(titles)
    n_chars = clean.str.len().to_numpy()
    bad = np.flatnonzero(n_chars == 0)
    if bad.size:
        raise invalid(f"{field}[{int(bad[0])}].title: empty; give the movie's title")
    bad = np.flatnonzero(n_chars > MAX_TITLE_CHARS)
    if bad.size:
        i = int(bad[0])
        raise invalid(f"{field}[{i}].title: {int(n_chars[i])} characters; at most {MAX_TITLE_CHARS}")
    bad = np.flatnonzero((years != 0) & ((years < YEAR_MIN) | (years > YEAR_MAX)))
    if bad.size:
        i = int(bad[0])
        raise invalid(
            f"{field}[{i}].year: {int(years[i])} is out of range; allowed {YEAR_MIN}..{YEAR_MAX}, or 0 for unknown"
        )
    counts = np.fromiter((len(g) for g in genres), np.int64, len(genres))
    bad = np.flatnonzero(counts > MAX_GENRES)
    if bad.size:
        i = int(bad[0])
        raise invalid(f"{field}[{i}].genres: {int(counts[i])} genres; at most {MAX_GENRES}")
    flat = _text(np.array([g for gs in genres for g in gs], dtype=object))
    n_chars = flat.str.len().to_numpy()
    bad = np.flatnonzero(n_chars > MAX_GENRE_CHARS)
    if bad.size:
        j = int(bad[0])
        starts = np.concatenate([[0], np.cumsum(counts)])
        i = int(np.searchsorted(starts, j, side="right") - 1)
        raise invalid(
            f"{field}[{i}].genres[{j - int(starts[i])}]: {int(n_chars[j])} characters; at most {MAX_GENRE_CHARS}"
        )
    names = flat.tolist()
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    kept = [[g for g in names[a:b] if g] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return MovieTable(movie_ids.astype(np.int64, copy=True), clean.tolist(), years.astype(np.int64, copy=True), kept)
