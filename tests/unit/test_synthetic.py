"""The one synthetic data generator: shape, uniqueness, CSR order, seed, long tail, rating grid."""

from __future__ import annotations

import numpy as np

from movierec.trainer.synthetic import synthetic_csr, synthetic_ratings


def test_shape_unique_sorted_and_seeded() -> None:
    m = synthetic_csr(3000, 800, 60_000, seed=3)
    assert m.n_rows == 3000 and m.n_cols == 800 and m.nnz == 60_000
    keys = np.repeat(np.arange(3000), m.row_lengths()) * 800 + m.indices
    assert (np.diff(keys) > 0).all()  # unique pairs, CSR order (by user, then movie)
    assert set(np.unique(m.values)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    again = synthetic_csr(3000, 800, 60_000, seed=3)
    np.testing.assert_array_equal(again.indices, m.indices)
    assert not np.array_equal(synthetic_csr(3000, 800, 60_000, seed=4).indices, m.indices)


def test_popularity_is_long_tailed() -> None:
    m = synthetic_csr(5000, 2000, 100_000, seed=0)
    pop = np.sort(np.bincount(m.indices, minlength=2000))[::-1]
    assert pop[:20].sum() > 0.1 * m.nnz  # top 1% of movies: > 10% of ratings
    assert np.median(pop) < m.nnz / 2000


def test_half_star_grid_and_frame_view() -> None:
    m = synthetic_csr(400, 300, 8_000, seed=1, step=0.5, low=0.5)
    assert set(np.unique(m.values)) <= set(np.arange(1, 11) / 2)
    assert m.values.min() == 0.5 and m.values.max() == 5.0
    df = synthetic_ratings(400, 300, 8_000, seed=1, step=0.5, low=0.5, start_ids_at=10)
    assert len(df) == m.nnz and df.user.min() >= 10 and df.item.min() >= 10
    np.testing.assert_array_equal(df.rating.to_numpy(), m.values)
    assert not df.duplicated(["user", "item"]).any()


def test_ratings_carry_low_rank_signal() -> None:
    """Users' deviations from the movie means correlate across movies (a taste model, not biases alone)."""
    m = synthetic_csr(300, 40, 12_000, seed=2)  # dense: every user rates every movie
    assert m.nnz == 12_000
    dense = m.values.reshape(300, 40)
    resid = dense - dense.mean(axis=0)
    sv = np.linalg.svd(resid, compute_uv=False)
    assert sv[0] ** 2 > 3 * (sv**2).sum() / 40  # the top component explains far more than an even share
