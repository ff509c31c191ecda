"""Synthetic MovieLens-shaped ratings with a seed: the one generator behind tests and benchmarks.

Popularity is long-tailed (Zipf-like item weights, log-normal user activity). Pairs are drawn by inverse-CDF
sampling (`searchsorted` on the cumulative weights) and deduplicated with `np.unique` on `user * n + item`
keys, which also leaves them sorted by user then movie, i.e. in CSR order: no dense matrix at any scale.
Ratings come from a low-rank taste model plus a movie bias and noise, rounded onto the rating grid, so a
model has something real to learn (and early stopping behaves as on real data). Fully vectorized.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.core.sparse import Csr


def synthetic_csr(
    n_users: int,
    n_items: int,
    n_ratings: int,
    *,
    seed: int = 0,
    zipf: float = 1.0,
    sigma: float = 1.0,
    rank: int = 8,
    step: float = 1.0,
    low: float = 1.0,
    high: float = 5.0,
) -> Csr:
    """A users x items rating matrix with n_ratings unique entries (fewer only if the matrix is too small).

    Ratings lie on the grid low, low + step, ..., high (step 0.5 from 0.5 gives ml-latest's half stars).
    """
    if n_users <= 0 or n_items <= 0 or n_ratings < 0 or rank <= 0 or step <= 0 or high < low:
        raise ValueError("synthetic_csr needs n_users, n_items, rank, step > 0, n_ratings >= 0 and low <= high")
    rng = np.random.default_rng(seed)
    target = min(n_ratings, n_users * n_items)
    item_w = 1.0 / np.arange(1, n_items + 1) ** zipf
    item_cdf = np.cumsum(item_w[rng.permutation(n_items)])
    item_cdf /= item_cdf[-1]
    user_cdf = np.cumsum(rng.lognormal(0.0, sigma, n_users))
    user_cdf /= user_cdf[-1]
    keys = np.zeros(0, dtype=np.int64)
    for _ in range(16):  # each round draws the shortfall and a margin for duplicates
        if keys.size >= target:
            break
        draw = int((target - keys.size) * 1.25) + 1024
        u = np.searchsorted(user_cdf, rng.random(draw), side="right").clip(0, n_users - 1)
        i = np.searchsorted(item_cdf, rng.random(draw), side="right").clip(0, n_items - 1)
        keys = np.unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    if keys.size < target:  # a nearly full matrix: the rest uniformly from the cells not drawn yet
        free = np.setdiff1d(np.arange(n_users * n_items, dtype=np.int64), keys, assume_unique=True)
        keys = np.union1d(keys, rng.choice(free, target - keys.size, replace=False))
    if keys.size > target:  # drop a random surplus, keep the sorted order
        keys = keys[np.sort(rng.choice(keys.size, target, replace=False))]
    users, items = np.divmod(keys, n_items)
    p = rng.normal(0.0, 1.0, (n_users, rank)).astype(np.float32)
    q = rng.normal(0.0, 1.0, (n_items, rank)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, n_items).astype(np.float32)
    taste = np.einsum("ij,ij->i", p[users], q[items]) / np.sqrt(rank)
    raw = 3.6 + bias[items] + taste + rng.normal(0.0, 0.5, keys.size)
    ratings = np.clip(low + np.rint((raw - low) / step) * step, low, high).astype(np.float32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return Csr(indptr, items.astype(np.int64), ratings, n_items)


def synthetic_ratings(
    n_users: int = 1000,
    n_items: int = 500,
    n_ratings: int = 20_000,
    *,
    seed: int = 0,
    zipf: float = 1.0,
    rank: int = 8,
    step: float = 1.0,
    low: float = 1.0,
    start_ids_at: int = 1,
) -> pd.DataFrame:
    """`synthetic_csr` as a ratings table (user, item, rating, timestamp), ids from `start_ids_at`."""
    m = synthetic_csr(n_users, n_items, n_ratings, seed=seed, zipf=zipf, rank=rank, step=step, low=low)
    users = np.repeat(np.arange(n_users, dtype=np.int64), m.row_lengths())
    ts = 880_000_000 + np.random.default_rng(seed + 1).integers(0, 20_000_000, m.nnz)
    return pd.DataFrame(
        {"user": users + start_ids_at, "item": m.indices + start_ids_at, "rating": m.values, "timestamp": ts}
    )


def synthetic_catalog(n_items: int, *, start_ids_at: int = 1, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    genres = np.array(["Action", "Comedy", "Drama", "Romance", "Sci-Fi", "Thriller", "Animation"])
    ids = np.arange(start_ids_at, start_ids_at + n_items)
    picks = rng.integers(0, genres.size, (n_items, 2))
    return pd.DataFrame(
        {
            "item": ids,
            "title": [f"Synthetic Movie {i}" for i in ids],
            "year": rng.integers(1950, 2020, n_items),
            "genres": ["|".join(sorted(set(genres[p]))) for p in picks],
        }
    )
