"""The kNN-baseline rating model (item-item neighbourhood on baseline residuals, closed form), an ensemble member."""

from __future__ import annotations

import numpy as np
import torch

from movierec.core.models import build_model
from movierec.core.sparse import IdMap
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.data import holdout_mask
from movierec.trainer.fit.closed_form import KnnBaselineSolver
from movierec.trainer.pipeline import ratings_matrix
from movierec.trainer.train import fit, pooled_rmse


def _data(tiny_ratings):
    train = tiny_ratings[0]
    users, items = IdMap.from_ids(train.user), IdMap.from_ids(train.item)
    mask = holdout_mask(train.user.to_numpy(), 0.1, 0)
    full = ratings_matrix(train, users, items)
    return ratings_matrix(train[~mask], users, items), ratings_matrix(train[mask], users, items), full


def _dense(csr) -> torch.Tensor:
    x = torch.zeros(csr.n_rows, csr.n_cols)
    r, c, v = csr.to_coo()
    x[torch.from_numpy(r), torch.from_numpy(c)] = torch.from_numpy(v)
    return x


def _bias_only_rmse(tr, va) -> float:
    """Global mean + item mean offset: the reference both models must beat on held-out ratings."""
    x = _dense(tr)
    rated = x != 0
    mu = x[rated].mean()
    item = torch.where(rated.sum(0) > 0, (x - mu).mul(rated).sum(0) / rated.sum(0).clamp_min(1), 0.0)
    r, c, v = va.to_coo()
    pred = (mu + item[torch.from_numpy(c)]).clamp(1, 5).numpy()
    return float(np.sqrt(np.mean((pred - v) ** 2)))


def test_knn_baseline_similarity_and_prediction_match_the_formulas(tiny_ratings) -> None:
    tr, _va, _full = _data(tiny_ratings)
    n = tr.n_cols
    cfg = ModelConfig(kind="knn-baseline", n_items=n, extra={"neighbors": n, "shrink": 5.0, "l2": 0.5})
    model = build_model(cfg)
    KnnBaselineSolver().solve(model, tr)
    x = _dense(tr).double()
    rated = x != 0
    # biases: the last alternating step is the user step, so scores recompute exactly these b_u
    base, _ = model.baseline(x.float())
    e = torch.where(rated, x - base.double(), 0.0)
    i, j = 3, 7
    both = rated[:, i] & rated[:, j]
    num = (e[both, i] * e[both, j]).sum()
    rho = num / torch.sqrt((e[both, i] ** 2).sum() * (e[both, j] ** 2).sum())
    expect = max(float(rho * both.sum() / (both.sum() + 5.0)), 0.0)
    assert abs(float(model.sim[i, j]) - expect) < 1e-4
    assert torch.allclose(model.sim, model.sim.T, atol=1e-5)  # all neighbours kept: symmetric
    assert float(model.sim.diagonal().abs().max()) == 0.0
    # prediction for one (user, movie): baseline + similarity-weighted residuals of the user's rated movies
    u = 0
    s = model.sim[i].double()
    manual = base[u, i].double() + (s * e[u]).sum() / ((s * rated[u]).sum() + 0.5)
    assert abs(float(model.scores(x[u : u + 1].float())[0, i]) - float(manual)) < 1e-4


def test_knn_baseline_keeps_top_neighbors_and_beats_the_bias_baseline(tiny_ratings) -> None:
    tr, va, _full = _data(tiny_ratings)
    cfg = ModelConfig(kind="knn-baseline", n_items=tr.n_cols, extra={"neighbors": 10, "shrink": 10.0})
    res = fit(tr, va, cfg, TrainConfig(epochs=1, device="cpu"), progress=False)
    assert int((res.model.sim > 0).sum(dim=1).max()) <= 10
    assert pooled_rmse(res.model, tr, va, torch.device("cpu")) < _bias_only_rmse(tr, va)


def test_ease_sparse_and_dense_inputs_score_alike() -> None:
    """EASE multiplies sparse rating rows as a sparse matrix; the answer must equal the dense product."""
    import torch

    from movierec.core.models import EASE
    from movierec.trainer.config import ModelConfig

    model = EASE(ModelConfig(kind="ease", n_items=40))
    torch.manual_seed(0)
    model.weights.copy_(torch.randn(40, 40))
    sparse_rows = torch.zeros(3, 40)
    sparse_rows[0, [1, 5]] = torch.tensor([4.0, 2.0])
    sparse_rows[2, 7] = 5.0
    dense_rows = torch.rand(2, 40) * 4 + 1
    for x in (sparse_rows, dense_rows):
        expected = (x != 0).float() @ model.weights
        torch.testing.assert_close(model.scores(x), expected, rtol=1e-5, atol=1e-5)
