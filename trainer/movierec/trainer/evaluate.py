"""Honest evaluation of a scorer on a held-out ratings table.

Rating metrics are pooled over every held-out rating (predictions, fallbacks included, clipped into the
artifact's rating scale, e.g. [1, 5] for ml-100k or [0.5, 5] for ml-latest). Held-out pairs the model
cannot score are never dropped: a movie unknown to training gets the user's mean training rating, a user
unknown to training gets the movie's mean rating, and both unknown get the global mean; their counts are
reported (`cold_users_ratings`, `cold_items_ratings`).

Top-N: relevant = held-out rating >= 4; candidates = every movie the user did not rate in training; users
with no relevant held-out movie are skipped. Relevant movies unknown to training stay in the denominator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from movierec.core.scoring import Scorer
from movierec.core.sparse import Csr
from movierec.trainer.metrics import mae, mean_user_rmse, ranking_metrics, rmse

RELEVANT_MIN_RATING = 4.0


def predict_frame(
    scorer: Scorer, users: np.ndarray, items: np.ndarray, batch_size: int = 1024
) -> tuple[np.ndarray, dict[str, int]]:
    """Predicted ratings for raw (user, item) pairs, with the documented fallbacks for unknown ids."""
    u = scorer.users.to_index(users)
    i = scorer.items.to_index(items)
    pred = np.empty(u.shape[0], dtype=np.float32)
    warm = (u >= 0) & (i >= 0)
    if warm.any():
        uniq, inverse = np.unique(u[warm], return_inverse=True)
        targets = Csr.from_coo(inverse, i[warm], np.ones(int(warm.sum())), uniq.size, scorer.n_items)
        # from_coo sorts by (row, col): map back to the caller's order
        order = np.lexsort((i[warm], inverse))
        # users in batches: the scorer densifies its input rows (batch x movies), never all users at once
        values = np.concatenate([
            scorer.predict(scorer.history.rows(uniq[s : s + batch_size]), targets.rows(np.arange(s, min(s + batch_size, uniq.size))))
            for s in range(0, uniq.size, batch_size)
        ])  # fmt: skip
        warm_pred = np.empty_like(values)
        warm_pred[order] = values
        pred[warm] = warm_pred
    user_means = scorer.history.row_means(default=scorer.global_mean)
    cold_item = (u >= 0) & (i < 0)
    pred[cold_item] = user_means[u[cold_item]]
    cold_user = (u < 0) & (i >= 0)
    pred[cold_user] = scorer.item_means[i[cold_user]]
    pred[(u < 0) & (i < 0)] = scorer.global_mean
    counts = {"cold_users_ratings": int((u < 0).sum()), "cold_items_ratings": int((i < 0).sum())}
    return scorer.rating_scale.clip(pred), counts


def rating_metrics(scorer: Scorer, test: pd.DataFrame) -> dict[str, Any]:
    """Pooled RMSE/MAE of the rating model; NaN when the artifact has only a ranking (top-N) model."""
    if "rating" not in scorer.artifact.models:
        nan = float("nan")
        return {"rmse": nan, "mae": nan, "mean_user_rmse": nan, "ratings": int(len(test))}
    users = test["user"].to_numpy(np.int64)
    pred, counts = predict_frame(scorer, users, test["item"].to_numpy(np.int64))
    true = test["rating"].to_numpy(np.float32)
    return {
        "rmse": rmse(pred, true),
        "mae": mae(pred, true),
        "mean_user_rmse": mean_user_rmse(users, pred, true),
        "ratings": int(len(test)),
        **counts,
    }


def topn_metrics(scorer: Scorer, test: pd.DataFrame, k: int = 10, batch_size: int = 1024) -> dict[str, Any]:
    rel = test[test["rating"] >= RELEVANT_MIN_RATING]
    u = scorer.users.to_index(rel["user"].to_numpy(np.int64))
    rel, u = rel[u >= 0], u[u >= 0]
    users = np.unique(u)
    if users.size == 0:
        return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), f"hit@{k}": float("nan"), "users": 0}
    row = np.searchsorted(users, u)
    i = scorer.items.to_index(rel["item"].to_numpy(np.int64))
    # movies unknown to training get columns past the catalog: never recommended, still relevant
    unknown_raw, unknown_col = np.unique(rel["item"].to_numpy(np.int64)[i < 0], return_inverse=True)
    i = i.copy()
    i[i < 0] = scorer.n_items + unknown_col
    relevant = Csr.from_coo(row, i, np.ones(row.size), users.size, scorer.n_items + unknown_raw.size)
    ranked = np.concatenate(
        [scorer.recommend_users(users[s : s + batch_size], k)[0] for s in range(0, users.size, batch_size)]
    )
    return ranking_metrics(ranked, relevant, k)


def evaluate(scorer: Scorer, test: pd.DataFrame, k: int = 10) -> dict[str, Any]:
    return {**rating_metrics(scorer, test), **topn_metrics(scorer, test, k)}
