"""Evaluation metrics as pure numpy functions (tested against hand-computed values).

Rating metrics are pooled over all held-out ratings. The classic notebook reported a different number: the mean
over test users of each user's RMSE (`mean_user_rmse`), kept for comparison only.

Top-N metrics take each user's ranked list (dense item indices, -1 = padding) and the user's relevant items
(held-out rating >= 4). Recall@K = hits / |relevant| (RecBole's definition), NDCG@K with binary gains and the
ideal DCG over min(K, |relevant|) items, HitRate@K = 1 if any hit. Users with no relevant item are skipped.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from movierec.core.sparse import Csr


def rmse(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if p.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if p.size == 0:
        return float("nan")
    return float(np.mean(np.abs(p - t)))


def mean_user_rmse(users: npt.ArrayLike, pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Mean over users of the per-user RMSE (the classic notebook's test loss)."""
    u = np.asarray(users, np.int64)
    if u.size == 0:
        return float("nan")
    sq = (np.asarray(pred, np.float64) - np.asarray(true, np.float64)) ** 2
    _, inverse, counts = np.unique(u, return_inverse=True, return_counts=True)
    per_user = np.sqrt(np.bincount(inverse, weights=sq) / counts)
    return float(per_user.mean())


def ranking_metrics(ranked: npt.NDArray[np.int64], relevant: Csr, k: int) -> dict[str, float]:
    """Recall@k, NDCG@k, HitRate@k averaged over rows of `relevant` that have at least one relevant item.

    ranked: (n_rows, >=k) dense item indices per row, best first, -1 for padding.
    relevant: Csr with the same n_rows; the columns present in a row are that row's relevant items.
    """
    ranked = np.asarray(ranked, dtype=np.int64)[:, :k]
    n_rel = relevant.row_lengths()
    users = np.flatnonzero(n_rel > 0)
    if users.size == 0:
        return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), f"hit@{k}": float("nan"), "users": 0}
    top = ranked[users]
    # hits[u, j] = top[u, j] is relevant for u: compare against the sorted relevant columns of each row.
    sub = relevant.rows(users)
    row_of = np.repeat(np.arange(users.size), sub.row_lengths())
    key_rel = row_of * (relevant.n_cols + 1) + sub.indices
    key_top = np.arange(users.size)[:, None] * (relevant.n_cols + 1) + np.where(top >= 0, top, relevant.n_cols)
    hits = np.isin(key_top, key_rel)
    n_hits = hits.sum(axis=1)
    rel_u = n_rel[users]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[: top.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(rel_u, k) - 1]
    return {
        f"recall@{k}": float(np.mean(n_hits / rel_u)),
        f"ndcg@{k}": float(np.mean(dcg / ideal)),
        f"hit@{k}": float(np.mean(n_hits > 0)),
        "users": int(users.size),
    }
