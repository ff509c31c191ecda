"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from movierec.core.sparse import Csr
from movierec.trainer.metrics import mae, mean_user_rmse, ranking_metrics, rmse


def test_rmse_mae_pooled() -> None:
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert math.isnan(rmse([], []))


def test_mean_user_rmse_is_mean_of_per_user_rmses() -> None:
    # user 1: errors (1, 1) -> 1; user 2: error 3 -> 3; mean 2 (pooled would be sqrt(11/3))
    assert mean_user_rmse([1, 1, 2], [2, 3, 5], [1, 2, 2]) == pytest.approx(2.0)


def test_ranking_metrics_hand_computed() -> None:
    # row 0: relevant {1, 4}; ranked [1, 2, 4] -> hits at ranks 1 and 3
    # row 1: relevant {0}; ranked [2, 3, -1] -> no hit
    # row 2: no relevant items -> skipped
    relevant = Csr.from_coo([0, 0, 1], [1, 4, 0], [1, 1, 1], n_rows=3, n_cols=5)
    ranked = np.array([[1, 2, 4], [2, 3, -1], [0, 1, 2]])
    m = ranking_metrics(ranked, relevant, k=3)
    dcg0 = 1 + 1 / math.log2(4)
    idcg0 = 1 + 1 / math.log2(3)
    assert m["users"] == 2
    assert m["recall@3"] == pytest.approx((2 / 2 + 0) / 2)
    assert m["hit@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx((dcg0 / idcg0 + 0) / 2)


def test_ranking_metrics_truncates_to_k() -> None:
    relevant = Csr.from_coo([0], [3], [1], n_rows=1, n_cols=5)
    m = ranking_metrics(np.array([[0, 1, 3]]), relevant, k=2)
    assert m["recall@2"] == 0.0 and m["ndcg@2"] == 0.0
