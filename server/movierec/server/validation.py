"""Request validation: raw ids/ratings (numpy arrays) -> dense indices / Csr, or a RequestError.

Every check is vectorized over the whole request (no Python loop per item); error messages name the field,
the position of the first offending entry and the allowed range. Ratings are checked against the serving
model's own rating scale (from its artifact): there is no rating range of the server's own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from movierec.core.artifact import RatingScale
from movierec.core.sparse import Csr, IdMap
from movierec.server.errors import ErrorCode, RequestError, invalid

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

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
