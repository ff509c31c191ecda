"""EASE at scale: the blocked sparse solve equals the dense formula, and pruned EASE (max_items) against exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from movierec.core.models import EASE, build_model
from movierec.core.sparse import Csr
from movierec.trainer.config import ModelConfig
from movierec.trainer.fit.closed_form import EaseSolver, gram_columns
from movierec.trainer.synthetic import synthetic_csr

N_USERS, N_ITEMS = 1500, 800


@pytest.fixture(scope="module")
def ratings() -> Csr:
    return synthetic_csr(N_USERS, N_ITEMS, 60_000, seed=3)


def _solved(m: Csr, max_items: int = 0, target: str = "liked") -> EASE:
    cfg = ModelConfig(kind="ease", n_items=m.n_cols,
                      extra={"target": target, "l2": 200.0, "like_threshold": 4.0, "max_items": max_items})
    model = build_model(cfg)
    assert isinstance(model, EASE)
    EaseSolver().solve(model, m)
    return model


def _dense_reference(m: Csr, target: str) -> torch.Tensor:
    """The textbook solve on dense users x movies matrices (what the solver did before it went sparse)."""
    r, c, v = m.to_coo()
    x = torch.zeros(m.n_rows, m.n_cols, dtype=torch.float64)
    x[r, c] = 1.0
    gram = x.T @ x
    gram.diagonal().add_(200.0)
    p = torch.linalg.inv(gram)
    if target == "rated":
        cmat = torch.eye(m.n_cols, dtype=torch.float64) - p * 200.0
    else:
        y = torch.zeros_like(x)
        liked = v >= 4.0
        y[r[liked], c[liked]] = 1.0 if target == "liked" else torch.from_numpy(v[liked] - 3.0).double()
        cmat = p @ (x.T @ y)
    b = cmat - p * (torch.diagonal(cmat) / torch.diagonal(p))[None, :]
    b.fill_diagonal_(0.0)
    return b.float()


def test_gram_columns_is_exact(ratings: Csr) -> None:
    r, c, v = ratings.to_coo()
    x = torch.zeros(N_USERS, N_ITEMS, dtype=torch.float64)
    x[r, c] = 1.0
    y = torch.zeros_like(x)
    y[r, c] = torch.from_numpy(v).double()
    got = gram_columns(ratings, np.ones(ratings.nnz), v.astype(np.float64), torch.device("cpu"))
    assert torch.equal(got, x.T @ y)


def test_gram_columns_in_row_blocks(ratings: Csr, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of rows of A' (sizes that do not divide the movies) give the dense product: exactly on integer
    values (EASE's counts), to rounding on real ones (the kNN-baseline's residuals)."""
    import movierec.trainer.fit.closed_form as closed_form

    r, c, _ = ratings.to_coo()
    e = np.random.default_rng(5).normal(size=ratings.nnz)
    x = torch.zeros(N_USERS, N_ITEMS, dtype=torch.float64)
    x[r, c] = torch.from_numpy(e)
    ones = (x != 0).double()
    for rows in (7, 256, 10_000):
        monkeypatch.setattr(closed_form, "GRAM_ROWS", rows)
        assert torch.equal(gram_columns(ratings, np.ones(ratings.nnz), np.ones(ratings.nnz), torch.device("cpu")),
                           ones.T @ ones)  # fmt: skip
        got = gram_columns(ratings, e, e * e, torch.device("cpu"))
        torch.testing.assert_close(got, x.T @ (x * x), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("target", ["rated", "liked", "graded"])
def test_exact_solve_unchanged(ratings: Csr, target: str) -> None:
    model = _solved(ratings, 0, target)
    assert not model.pruned
    assert torch.equal(model.weights, _dense_reference(ratings, target))


def _top10(model: EASE, x: torch.Tensor) -> torch.Tensor:
    s = model.scores(x)
    s.masked_fill_(x != 0, float("-inf"))
    return s.topk(10, dim=1).indices


def test_pruned_top10_matches_exact(ratings: Csr) -> None:
    """EASE over the 600 most rated of 800 movies: stated tolerance, measured 0.95 mean overlap and 99.5% of
    users with >= 8 of the exact top 10."""
    x = torch.from_numpy(ratings.densify())
    exact, pruned = _top10(_solved(ratings), x), _top10(_solved(ratings, 600), x)
    overlap = np.array([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(exact, pruned, strict=True)])
    assert overlap.mean() >= 0.9
    assert (overlap >= 0.8).mean() >= 0.95


def test_pruned_keeps_most_rated_and_ranks_the_rest_below(ratings: Csr) -> None:
    model = _solved(ratings, 300)
    assert model.pruned and model.weights.shape == (300, 300)
    counts = np.bincount(ratings.indices, minlength=N_ITEMS)
    assert counts[model.kept.numpy()].min() >= np.delete(counts, model.kept.numpy()).max()
    x = torch.from_numpy(ratings.rows(np.arange(50)).densify())
    s = model.scores(x)
    others = np.setdiff1d(np.arange(N_ITEMS), model.kept.numpy())
    assert (s[:, others].max(dim=1).values < s[:, model.kept].min(dim=1).values).all()
    # among the others: the more popular first
    order = torch.argsort(s[0, others], descending=True).numpy()
    assert (np.diff(counts[others][order]) <= 0).all()
    # the sparse serving path gives the same scores
    csr = torch.from_numpy(x.numpy()).to_sparse_csr()
    assert torch.allclose(model.scores_sparse(csr), s, atol=1e-5)


def test_pruned_state_round_trips_and_old_states_load(ratings: Csr) -> None:
    model = _solved(ratings, 300)
    fresh = build_model(model.config)
    fresh.load_state_dict(model.state_dict())
    assert isinstance(fresh, EASE) and fresh.pruned
    x = torch.from_numpy(ratings.rows(np.arange(20)).densify())
    assert torch.equal(fresh.scores(x), model.scores(x))
    exact = _solved(ratings)
    legacy = {"weights": exact.weights.clone()}  # an artifact from before pruning: no kept / popularity
    old = build_model(exact.config)
    old.load_state_dict(legacy)
    assert torch.equal(old.scores(x), exact.scores(x))


# kNN-baseline at scale: the same chunked sparse products, and a pruned neighbourhood


def _knn(m: Csr, max_items: int) -> torch.nn.Module:
    from movierec.trainer.fit.closed_form import KnnBaselineSolver

    model = build_model(ModelConfig(kind="knn-baseline", n_items=m.n_cols,
                                    extra={"neighbors": 30, "shrink": 100.0, "l2": 0.1, "max_items": max_items}))
    KnnBaselineSolver().solve(model, m)
    return model


def test_knn_sparse_solve_matches_dense(ratings: Csr, monkeypatch: pytest.MonkeyPatch) -> None:
    import movierec.trainer.fit.closed_form as cf

    dense = _knn(ratings, N_ITEMS)  # small: the dense path
    monkeypatch.setattr(cf, "KNN_DENSE_CELLS", 0)  # force the sparse path over every movie
    sparse = _knn(ratings, N_ITEMS)
    assert not sparse.pruned
    x = torch.from_numpy(ratings.rows(np.arange(200)).densify())
    assert torch.allclose(sparse.scores(x), dense.scores(x), atol=1e-4)


def test_knn_pruned_falls_back_to_the_baseline(ratings: Csr) -> None:
    model = _knn(ratings, 300)
    assert model.pruned and model.sim.shape == (300, 300)
    x = torch.from_numpy(ratings.rows(np.arange(100)).densify())
    base, _ = model.baseline(x)
    others = np.setdiff1d(np.arange(N_ITEMS), model.kept.numpy())
    out = model.scores(x)
    assert torch.equal(out[:, others], base[:, others])
    fresh = build_model(model.config)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.scores(x), out)


def test_pruned_models_never_allocate_n_items_squared() -> None:
    """ml-25m's 59,047 movies: an n x n float32 buffer would be 14 GB before the solver shrinks it."""
    n = 59_047
    ease = build_model(ModelConfig(kind="ease", n_items=n, extra={"max_items": 100}))
    knn = build_model(ModelConfig(kind="knn-baseline", n_items=n, extra={"max_items": 100}))
    assert isinstance(ease, EASE) and ease.weights.shape == (100, 100) and ease.pruned
    assert knn.sim.shape == (100, 100)
