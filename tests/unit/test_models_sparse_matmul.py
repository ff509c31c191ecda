"""csr_matmul (the gather-and-sum product of sparse rating rows and a weight matrix) against the dense product."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from movierec.core.device import csr_tensor
from movierec.core.models.base import csr_matmul
from movierec.core.sparse import Csr


def _rows() -> Csr:
    # row 0: two ratings, row 1: none, row 2: a stored zero and a rating, row 3: one rating of the last column
    rows = np.array([0, 0, 2, 2, 3])
    cols = np.array([1, 4, 0, 3, 5])
    vals = np.array([4.0, 2.5, 0.0, 5.0, 1.0])
    return Csr.from_coo(rows, cols, vals, 4, 6)


def _dense(m: Csr) -> torch.Tensor:
    out = np.zeros((m.n_rows, m.n_cols), np.float32)
    r, c, v = m.to_coo()
    out[r, c] = v
    return torch.from_numpy(out)


def test_weighted_and_binary_products_equal_the_dense_ones() -> None:
    m = _rows()
    x = csr_tensor(m, torch.device("cpu"))
    w = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    dense = _dense(m)
    torch.testing.assert_close(csr_matmul(x, w), dense @ w)
    torch.testing.assert_close(csr_matmul(x, w, binary=True), (dense != 0).float() @ w)
    assert torch.equal(csr_matmul(x, w)[1], torch.zeros(3))  # a row with no ratings scores 0


def test_columns_renumber_into_weight_rows_and_drop_the_rest() -> None:
    m = _rows()
    x = csr_tensor(m, torch.device("cpu"))
    kept = torch.tensor([0, 3, 4])  # weight rows for movies 0, 3 and 4 only
    pos = torch.full((6,), -1, dtype=torch.int64)
    pos[kept] = torch.arange(3)
    w = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    dense = (_dense(m) != 0).float()
    torch.testing.assert_close(csr_matmul(x, w, binary=True, columns=pos), dense[:, kept] @ w)


@pytest.mark.parametrize("n_rows", [0, 3])
def test_no_stored_entries_give_zeros(n_rows: int) -> None:
    x = csr_tensor(Csr.empty(n_rows, 6), torch.device("cpu"))
    out = csr_matmul(x, torch.ones(6, 4))
    assert out.shape == (n_rows, 4) and not out.any()


def test_pruned_ease_sparse_scores_follow_a_changed_kept_set() -> None:
    """The kept movies' positions are cached between calls; a new kept set (or a copy into it) must not meet
    the old positions."""
    from movierec.core.config import ModelConfig
    from movierec.core.models import EASE

    model = EASE(ModelConfig(kind="ease", n_items=6, extra={"max_items": 3}))
    x = csr_tensor(_rows(), torch.device("cpu"))
    dense = (_dense(_rows()) != 0).float()
    for kept in ([0, 3, 4], [1, 2, 5], [5, 0, 1]):
        model.set_kept(torch.tensor(kept), torch.zeros(6))
        model.weights.copy_(torch.randn(3, 3, generator=torch.Generator().manual_seed(kept[0])))
        torch.testing.assert_close(model.scores_sparse(x), model.forward(dense))
    model.kept.copy_(torch.tensor([2, 3, 4]))  # in place: the same tensor, a new version
    torch.testing.assert_close(model.scores_sparse(x), model.forward(dense))
