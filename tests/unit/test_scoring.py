from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.core.scoring import Scorer
from movierec.core.sparse import Csr
from movierec.trainer.evaluate import predict_frame, rating_metrics


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Scorer:
    s = Scorer.load(tiny_artifact, device="cpu")
    s.warmup()
    return s


def test_topk_excludes_rated_items_and_is_sorted(scorer: Scorer) -> None:
    users = np.arange(10)
    items, scores = scorer.recommend_users(users, 15)
    assert items.shape == (10, 15) and scores.shape == (10, 15)
    hist = scorer.history.rows(users)
    for r in range(10):  # test-only loop over a handful of rows
        seen = set(hist.indices[hist.indptr[r] : hist.indptr[r + 1]].tolist())
        assert not seen & set(items[r].tolist())
        assert np.all(np.diff(scores[r]) <= 0)


def test_batched_scoring_equals_one_by_one(scorer: Scorer) -> None:
    users = np.array([3, 17, 42, 5])
    batch_items, batch_scores = scorer.recommend_users(users, 10)
    for r, u in enumerate(users):
        one_items, one_scores = scorer.recommend_users([u], 10)
        np.testing.assert_array_equal(one_items[0], batch_items[r])
        np.testing.assert_allclose(one_scores[0], batch_scores[r], rtol=1e-5, atol=1e-6)


def test_include_exclude_and_padding(scorer: Scorer) -> None:
    n = scorer.n_items
    inputs = Csr.from_coo([0, 1], [0, 0], [5.0, 4.0], 2, n)
    include = Csr.from_coo([0, 0, 0], [0, 3, 7], [1, 1, 1], 2, n)  # row 0 restricted to {0 (rated), 3, 7}
    exclude = Csr.from_coo([1], [5], [1], 2, n)
    items, scores = scorer.topk(inputs, 5, exclude=exclude, include=include, include_rows=np.array([True, False]))
    assert set(items[0][:2].tolist()) == {3, 7}
    assert list(items[0][2:]) == [-1, -1, -1] and np.isneginf(scores[0][2:]).all()
    assert 5 not in items[1] and 0 not in items[1] and (items[1] >= 0).all()


def test_predict_in_range_and_cold_vectors_get_movie_mean(scorer: Scorer) -> None:
    n = scorer.n_items
    inputs = Csr.from_coo([0, 0], [1, 2], [5.0, 1.0], 2, n)  # row 1 is empty
    targets = Csr.from_coo([0, 0, 1], [3, 4, 3], [1, 1, 1], 2, n)
    pred = scorer.predict(inputs, targets)
    assert pred.shape == (3,) and ((pred >= 1) & (pred <= 5)).all()
    assert pred[2] == pytest.approx(np.clip(scorer.item_means[3], 1, 5))


def test_evaluation_counts_and_handles_unknown_ids(scorer: Scorer) -> None:
    known_user, known_item = int(scorer.users.raw[0]), int(scorer.items.raw[0])
    test = pd.DataFrame({"user": [known_user, 99999, known_user, 99999], "item": [known_item, known_item, 88888, 88888],
                         "rating": [4.0, 3.0, 5.0, 1.0]})
    pred, counts = predict_frame(scorer, test.user.to_numpy(), test.item.to_numpy())
    assert counts == {"cold_users_ratings": 2, "cold_items_ratings": 2}
    assert pred[1] == pytest.approx(scorer.item_means[0])
    assert pred[3] == pytest.approx(scorer.global_mean)
    m = rating_metrics(scorer, test)
    assert m["ratings"] == 4 and np.isfinite(m["rmse"])


def test_thread_policy_reaches_worker_threads(scorer: Scorer) -> None:
    """OpenMP thread counts are per OS thread: the scorer applies the process's choice in whatever thread
    calls it (the server scores in a worker thread)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from movierec.core.device import configure_threads

    before = torch.get_num_threads()
    try:
        configure_threads(1)

        def in_worker() -> tuple[int, int]:
            start = torch.get_num_threads()
            scorer.recommend_users([0], 3)
            return start, torch.get_num_threads()

        with ThreadPoolExecutor(1) as pool:
            _, after_scoring = pool.submit(in_worker).result()
        assert after_scoring == 1
    finally:
        configure_threads(before)
