from __future__ import annotations

import numpy as np

from movierec.core.sparse import Csr, IdMap


def test_idmap_round_trip_and_unknown_ids() -> None:
    m = IdMap.from_ids([30, 10, 20, 10])
    assert list(m.raw) == [10, 20, 30]
    assert list(m.to_index([20, 99, 10, 5, 30])) == [1, -1, 0, -1, 2]
    assert list(m.to_raw([2, 0])) == [30, 10]
    assert list(IdMap.from_ids([]).to_index([1])) == [-1]


def test_csr_from_coo_rows_densify() -> None:
    m = Csr.from_coo([2, 0, 0, 2], [1, 3, 0, 0], [5, 4, 3, 1], n_rows=4, n_cols=4)
    assert list(m.indptr) == [0, 2, 2, 4, 4]
    dense = m.densify()
    expected = np.zeros((4, 4), np.float32)
    expected[0, 0], expected[0, 3], expected[2, 0], expected[2, 1] = 3, 4, 1, 5
    np.testing.assert_array_equal(dense, expected)
    sub = m.rows([2, 1, 0])
    np.testing.assert_array_equal(sub.densify(), expected[[2, 1, 0]])
    np.testing.assert_array_equal(m.transpose().densify(), expected.T)
    np.testing.assert_allclose(m.row_means(default=-1), [3.5, -1, 3.0, -1])
    assert list(m.positions([2, 0])) == [2, 3, 0, 1]
