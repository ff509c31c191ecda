"""Synthetic MovieLens-shaped ratings with a seed: for tests and benchmarks at realistic scale.

Popularity is long-tailed (Zipf-like item weights, log-normal user activity); ratings come from a low-rank
taste model plus noise, rounded to 1..5, so a model has something real to learn. Fully vectorized.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_ratings(
    n_users: int = 1000,
    n_items: int = 500,
    n_ratings: int = 20_000,
    *,
    seed: int = 0,
    zipf: float = 1.0,
    rank: int = 8,
    start_ids_at: int = 1,
) -> pd.DataFrame:
    """A ratings table (user, item, rating, timestamp) with unique (user, item) pairs, ids from `start_ids_at`."""
    rng = np.random.default_rng(seed)
    item_w = 1.0 / np.arange(1, n_items + 1) ** zipf
    item_w = item_w[rng.permutation(n_items)]
    item_w /= item_w.sum()
    user_w = rng.lognormal(0.0, 1.0, n_users)
    user_w /= user_w.sum()
    # Oversample, then drop duplicate pairs; repeat until enough unique pairs exist.
    pairs = np.zeros(0, dtype=np.int64)
    target = min(n_ratings, n_users * n_items)
    while pairs.size < target:
        need = int((target - pairs.size) * 1.3) + 16
        u = rng.choice(n_users, size=need, p=user_w)
        i = rng.choice(n_items, size=need, p=item_w)
        pairs = np.unique(np.concatenate([pairs, u.astype(np.int64) * n_items + i]))
    pairs = rng.permutation(pairs)[:target]
    users, items = pairs // n_items, pairs % n_items
    p = rng.normal(0, 1, (n_users, rank)).astype(np.float32)
    q = rng.normal(0, 1, (n_items, rank)).astype(np.float32)
    bias_i = rng.normal(0, 0.5, n_items)
    raw = 3.6 + bias_i[items] + (p[users] * q[items]).sum(axis=1) / np.sqrt(rank) + rng.normal(0, 0.5, users.size)
    ratings = np.clip(np.rint(raw), 1, 5).astype(np.float32)
    ts = 880_000_000 + rng.integers(0, 20_000_000, users.size)
    df = pd.DataFrame(
        {"user": users + start_ids_at, "item": items + start_ids_at, "rating": ratings, "timestamp": ts}
    )
    return df.sort_values(["user", "item"], kind="stable").reset_index(drop=True)


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
