"""The benchmarks' synthetic data generator: shape, uniqueness, CSR order, seed, long tail."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: `bench` is not installed
from bench.synthetic_data import synthetic_csr  # noqa: E402


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
