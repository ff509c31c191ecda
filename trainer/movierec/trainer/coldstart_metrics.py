"""Cold-start evaluation building blocks as pure numpy functions (tested against hand-computed values).

Used by `movierec.trainer.coldstart_report` (`movierec report --cold-start`); nothing here trains a model,
reads a file or calls the scorer. Everything is vectorized over users / ratings / movies (no loop per user).

- Reveal order: a new user's ratings ranked earliest first (timestamp, ties in file order); the first n are
  "revealed" to the model, the rest are the targets.
- Baselines: global popularity, popularity within the user's demographic segment (gender x age group),
  the genre-mean rating of a movie (mean training rating of the movies sharing a genre with it), and a
  content model (genres + decade ridge bias, shrunk movie bias, segment x genre offsets, and the user's own
  bias and genre offsets from the ratings they revealed, shrunk).
- Ranking helpers: top-k from a score matrix with exclusions, the full order of every row, the percentile
  rank of (row, movie) pairs in such an order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from movierec.core.features import AGE_GROUPS, GENDERS, age_group, decade
from movierec.core.sparse import Csr

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RELEVANT_MIN_RATING = 4.0
N_SEGMENTS = len(GENDERS) * len(AGE_GROUPS)  # gender x age group; index N_SEGMENTS = unknown

# Shrinkage of the content model, fixed a priori (textbook values, never tuned on test data): ridge on the
# content weights, and pseudo-counts towards 0 for each offset.
CONTENT_RIDGE = 25.0
ITEM_SHRINK = 25.0
SEGMENT_SHRINK = 50.0
USER_SHRINK = 5.0
USER_GENRE_SHRINK = 5.0
SEGMENT_MEAN_SHRINK = 10.0  # segment popularity's rating counterpart: segment mean shrunk to the movie mean


# -- reveal order ----------------------------------------------------------------------------------------
def history_rank(users: npt.ArrayLike, timestamps: npt.ArrayLike) -> IntArray:
    """Each rating's place in its user's history: 0 = earliest; equal timestamps keep the input order."""
    u = np.asarray(users, dtype=np.int64)
    t = np.asarray(timestamps, dtype=np.int64)
    n = u.size
    order = np.lexsort((np.arange(n), t, u))
    sorted_users = u[order]
    first = np.r_[True, sorted_users[1:] != sorted_users[:-1]] if n else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start
    return rank


def csr_of(rows: IntArray, cols: IntArray, values: npt.ArrayLike, mask: BoolArray, n_rows: int, n_cols: int) -> Csr:
    """The (row, col, value) triplets selected by `mask` as a Csr."""
    vals = np.asarray(values, dtype=np.float32)
    return Csr.from_coo(rows[mask], cols[mask], vals[mask], n_rows, n_cols)


def reveal_split(
    rows: IntArray, cols: IntArray, ratings: npt.ArrayLike, rank: IntArray, reveal: int, n_rows: int, n_cols: int
) -> tuple[Csr, Csr]:
    """(inputs, targets): each row's first `reveal` ratings by `rank` (history_rank), and the rest."""
    shown = rank < reveal
    return csr_of(rows, cols, ratings, shown, n_rows, n_cols), csr_of(rows, cols, ratings, ~shown, n_rows, n_cols)


def relevant_of(targets: Csr, threshold: float = RELEVANT_MIN_RATING) -> Csr:
    """The entries of `targets` rated at least `threshold` (the relevant movies of each row)."""
    r, c, v = targets.to_coo()
    return csr_of(r, c, v, v >= threshold, targets.n_rows, targets.n_cols)


def empty_like(matrix: Csr) -> Csr:
    return Csr.empty(matrix.n_rows, matrix.n_cols)


# -- segments and popularity -----------------------------------------------------------------------------
def segment_ids(gender: npt.ArrayLike, age: npt.ArrayLike) -> IntArray:
    """Demographic segment of each user, gender x age group (ml-1m's seven groups): 0..N_SEGMENTS-1, or
    N_SEGMENTS when the gender or the age is not given."""
    g = np.asarray(gender, dtype=object)
    gi = np.full(g.shape[0], -1, dtype=np.int64)
    for j, name in enumerate(GENDERS):
        gi[g == name] = j
    groups = age_group(np.asarray(age, dtype=np.int64))
    ai = np.full(g.shape[0], -1, dtype=np.int64)
    for j, name in enumerate(AGE_GROUPS):
        ai[groups == name] = j
    return np.where((gi >= 0) & (ai >= 0), gi * len(AGE_GROUPS) + ai, N_SEGMENTS)


def segment_label(segment: int) -> str:
    if segment >= N_SEGMENTS:
        return "unknown"
    return f"{GENDERS[segment // len(AGE_GROUPS)]} {AGE_GROUPS[segment % len(AGE_GROUPS)]}"


def item_stats(items: IntArray, ratings: npt.ArrayLike, n_items: int) -> tuple[FloatArray, FloatArray]:
    """(counts, sums) of the ratings of each movie."""
    r = np.asarray(ratings, dtype=np.float64)
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    sums = np.asarray(np.bincount(items, weights=r, minlength=n_items), dtype=np.float64)
    return counts, sums


def item_means(counts: FloatArray, sums: FloatArray, default: float) -> FloatArray:
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)


def popularity_scores(counts: FloatArray, means: FloatArray) -> FloatArray:
    """Global popularity as the scorer orders it: most ratings, then highest mean rating, then lowest index.
    Scores in (0, 1], descending in that order (no ties)."""
    n = counts.size
    order = np.lexsort((np.arange(n), -means, -counts))
    scores = np.empty(n, dtype=np.float64)
    scores[order] = 1.0 - np.arange(n, dtype=np.float64) / max(n, 1)
    return scores


def segment_popularity_scores(
    rating_segments: IntArray, items: IntArray, n_items: int, global_scores: FloatArray
) -> FloatArray:
    """(N_SEGMENTS + 1, n_items) scores: within a segment, movies by their number of ratings from that
    segment, ties broken by global popularity; the last row (unknown segment) is global popularity."""
    counts = np.bincount(rating_segments * n_items + items, minlength=(N_SEGMENTS + 1) * n_items)
    counts = counts.reshape(N_SEGMENTS + 1, n_items).astype(np.float64)
    counts[N_SEGMENTS] = 0.0  # the unknown segment ranks by global popularity alone
    return counts + 0.5 * global_scores[None, :]  # global scores lie in (0, 1]: they only break ties


def segment_mean_ratings(
    rating_segments: IntArray, items: IntArray, ratings: npt.ArrayLike, n_items: int, means: FloatArray,
    shrink: float = SEGMENT_MEAN_SHRINK,
) -> FloatArray:
    """(N_SEGMENTS + 1, n_items): each movie's mean rating within a segment, shrunk towards its overall mean
    by `shrink` pseudo-ratings; the unknown segment gets the overall mean."""
    key = rating_segments * n_items + items
    size = (N_SEGMENTS + 1) * n_items
    cnt = np.bincount(key, minlength=size).reshape(N_SEGMENTS + 1, n_items).astype(np.float64)
    tot = np.bincount(key, weights=np.asarray(ratings, np.float64), minlength=size).reshape(N_SEGMENTS + 1, n_items)
    cnt[N_SEGMENTS], tot[N_SEGMENTS] = 0.0, 0.0
    return (tot + shrink * means[None, :]) / (cnt + shrink)


# -- movie content ---------------------------------------------------------------------------------------
def genre_matrix(genres: Sequence[Sequence[str]], vocabulary: Sequence[str] | None = None) -> tuple[FloatArray, list[str]]:
    """(n_movies, n_genres) 0/1 rows and the genre names (sorted, or `vocabulary`'s order)."""
    names = sorted({g for gs in genres for g in gs if g}) if vocabulary is None else list(vocabulary)
    index = {g: j for j, g in enumerate(names)}
    rows = np.repeat(np.arange(len(genres)), [len(gs) for gs in genres])
    cols = np.array([index.get(g, -1) for gs in genres for g in gs], dtype=np.int64)
    out = np.zeros((len(genres), len(names)), dtype=np.float64)
    out[rows[cols >= 0], cols[cols >= 0]] = 1.0
    return out, names


def content_features(genres: FloatArray, years: npt.ArrayLike) -> FloatArray:
    """Content rows of the content model: the genre flags and a one-hot release decade."""
    decades = decade(np.asarray(years, dtype=np.int64))
    names = sorted(set(decades.tolist()) - {""})
    onehot = (decades[:, None] == np.array(names, dtype=object)[None, :]).astype(np.float64)
    return np.hstack([genres, onehot])


def genre_mean_predictions(
    genres: FloatArray, counts: FloatArray, sums: FloatArray, movies: IntArray, global_mean: float
) -> FloatArray:
    """For each of `movies`: the mean training rating of the movies sharing at least one genre with it
    (pooled over their ratings); the global mean for a movie with no genre or no such rated movie."""
    share = (genres[movies] @ genres.T) > 0  # (len(movies), n_items)
    n = share @ counts
    s = share @ sums
    return np.where(n > 0, s / np.maximum(n, 1), global_mean)


@dataclass(frozen=True)
class ContentModel:
    """A genre/year content model of ratings, fitted on training ratings (closed form):

        r(u, i) = mu + f_i . w + b_i + mean_{g in genres(i)} s[seg(u), g] + b_u + mean_{g in genres(i)} o[u, g]

    f_i: genre flags + decade one-hot (ridge `CONTENT_RIDGE`); b_i: the movie's residual mean shrunk by
    `ITEM_SHRINK` (0 for a movie without training ratings: a new movie is its content alone); s: the
    segment x genre residual means shrunk by `SEGMENT_SHRINK`; b_u, o[u, g]: the user's own residual mean
    and genre offsets from the ratings they revealed, shrunk by `USER_SHRINK` / `USER_GENRE_SHRINK`.
    """

    mu: float
    weights: FloatArray  # content feature -> rating offset
    item_bias: FloatArray  # (n_items,)
    segment_genre: FloatArray  # (N_SEGMENTS + 1, n_genres); the unknown segment's row is 0
    content: FloatArray  # (n_items, n_features)
    genre_avg: FloatArray  # (n_items, n_genres): genre flags / number of genres (0 row: no genre)

    @classmethod
    def fit(
        cls,
        content: FloatArray,
        genres: FloatArray,
        items: IntArray,
        ratings: npt.ArrayLike,
        rating_segments: IntArray,
    ) -> ContentModel:
        r = np.asarray(ratings, dtype=np.float64)
        n_items = content.shape[0]
        mu = float(r.mean()) if r.size else 0.0
        counts, sums = item_stats(items, r - mu, n_items)
        a = content.T @ (content * counts[:, None]) + CONTENT_RIDGE * np.eye(content.shape[1])
        weights = np.asarray(np.linalg.solve(a, content.T @ sums), dtype=np.float64)
        content_bias = content @ weights
        item_bias = (sums - counts * content_bias) / (counts + ITEM_SHRINK)
        genre_avg = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1.0)
        e = r - mu - content_bias[items] - item_bias[items]
        spread = genre_avg[items]  # (n_ratings, n_genres)
        seg_sum = np.zeros((N_SEGMENTS + 1, genres.shape[1]))
        seg_cnt = np.zeros_like(seg_sum)
        np.add.at(seg_sum, rating_segments, spread * e[:, None])
        np.add.at(seg_cnt, rating_segments, spread)
        segment_genre = seg_sum / (seg_cnt + SEGMENT_SHRINK)
        segment_genre[N_SEGMENTS] = 0.0
        return cls(mu, weights, item_bias, segment_genre, content, genre_avg)

    def base(self, items: IntArray, segments: IntArray) -> FloatArray:
        """Predictions without the user's own offsets, for (segment, movie) pairs."""
        seg = np.einsum("ij,ij->i", self.segment_genre[segments], self.genre_avg[items])
        return self.mu + self.content[items] @ self.weights + self.item_bias[items] + seg

    def user_offsets(
        self, rows: IntArray, items: IntArray, ratings: npt.ArrayLike, segments: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """(bias (n_rows,), genre offsets (n_rows, n_genres)) of each row from its revealed ratings.

        rows/items/ratings: the revealed ratings; segments: the segment of each row (n_rows = its length)."""
        n_rows = segments.shape[0]
        r = np.asarray(ratings, dtype=np.float64)
        e = r - self.base(items, segments[rows])
        n = np.bincount(rows, minlength=n_rows).astype(np.float64)
        bias = np.bincount(rows, weights=e, minlength=n_rows) / (n + USER_SHRINK)
        rest = e - bias[rows]
        spread = self.genre_avg[items]
        g_sum = np.zeros((n_rows, self.genre_avg.shape[1]))
        g_cnt = np.zeros_like(g_sum)
        np.add.at(g_sum, rows, spread * rest[:, None])
        np.add.at(g_cnt, rows, spread)
        return bias, g_sum / (g_cnt + USER_GENRE_SHRINK)

    def predict(
        self, rows: IntArray, items: IntArray, segments: IntArray, offsets: tuple[FloatArray, FloatArray]
    ) -> FloatArray:
        """Predictions for (row, movie) pairs; `segments` and `offsets` are per row."""
        bias, genre = offsets
        own = np.einsum("ij,ij->i", genre[rows], self.genre_avg[items])
        return self.base(items, segments[rows]) + bias[rows] + own

    def score_matrix(self, segments: IntArray, offsets: tuple[FloatArray, FloatArray]) -> FloatArray:
        """(n_rows, n_items) predictions of every movie for every row."""
        bias, genre = offsets
        static = self.mu + self.content @ self.weights + self.item_bias  # (n_items,)
        seg = self.segment_genre[segments] @ self.genre_avg.T  # (n_rows, n_items)
        own = genre @ self.genre_avg.T
        return static[None, :] + seg + own + bias[:, None]


# -- ranking ---------------------------------------------------------------------------------------------
def mask_entries(scores: FloatArray, matrix: Csr, value: float = -np.inf) -> FloatArray:
    """A copy of `scores` with `value` at every stored entry of `matrix` (same shape)."""
    out = np.array(scores, dtype=np.float64, copy=True)
    r, c, _ = matrix.to_coo()
    out[r, c] = value
    return out


def ranked_from_scores(scores: FloatArray, exclude: Csr | None = None, k: int | None = None) -> IntArray:
    """Each row's movies by descending score (ties: lower index first), the first `k` (all by default);
    excluded entries and -inf scores are never listed (-1 padding at the end)."""
    s = mask_entries(scores, exclude) if exclude is not None and exclude.nnz else np.asarray(scores, np.float64)
    order = np.argsort(-s, axis=1, kind="stable")
    if k is not None:
        order = order[:, :k]
    banned = np.isneginf(np.take_along_axis(s, order, axis=1))
    return np.where(banned, -1, order).astype(np.int64)


def percentile_ranks(ranked: IntArray, rows: IntArray, cols: IntArray, n_cols: int) -> FloatArray:
    """Percentile rank of movie `cols[j]` in row `rows[j]` of a full order (`ranked_from_scores`, or the
    scorer's top-k with k = every movie; -1 = padding): the share of the row's other candidates listed above
    it, 0 = first, 1 = last. NaN where the movie is not a candidate of that row."""
    n_rows, width = ranked.shape
    valid = ranked >= 0
    position = np.full((n_rows, n_cols), -1, dtype=np.int64)
    r_idx, p_idx = np.nonzero(valid)
    position[r_idx, ranked[r_idx, p_idx]] = p_idx
    pos = position[rows, cols]
    others = np.maximum(valid.sum(axis=1)[rows] - 1, 1)
    return np.where(pos >= 0, pos / others, np.nan)
