from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from movierec.core.scoring import Scorer
from movierec.core.sparse import IdMap
from movierec.trainer.config import PRESETS, ModelConfig, TrainConfig
from movierec.trainer.data import holdout_mask
from movierec.trainer.pipeline import ratings_matrix, resolve_roles, run_training
from movierec.trainer.train import fit


def _matrices(train: pd.DataFrame):
    users, items = IdMap.from_ids(train.user), IdMap.from_ids(train.item)
    mask = holdout_mask(train.user.to_numpy(), 0.1, 0)
    return ratings_matrix(train[~mask], users, items), ratings_matrix(train[mask], users, items), len(items)


def test_holdout_mask_per_user_fraction_and_never_empties_a_user() -> None:
    users = np.array([1] * 10 + [2] * 1 + [3] * 5)
    mask = holdout_mask(users, 0.2, seed=3)
    assert mask[users == 1].sum() == 2
    assert mask[users == 2].sum() == 0
    assert mask[users == 3].sum() == 1
    assert (holdout_mask(users, 0.2, seed=3) == mask).all()


def test_fit_is_reproducible_and_learns(tiny_ratings) -> None:
    tr, va, n_items = _matrices(tiny_ratings[0])
    mcfg = ModelConfig(n_items=n_items, hidden=(16, 8, 16))
    tcfg = TrainConfig(epochs=15, batch_size=16, lr=0.01, device="cpu", patience=0, seed=5)
    a = fit(tr, va, mcfg, tcfg, progress=False)
    b = fit(tr, va, mcfg, tcfg, progress=False)
    for (ka, va_), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(va_, vb), ka
    assert a.history[-1].train_rmse < a.history[0].train_rmse
    assert a.best_epoch == int(np.argmin([h.valid_rmse for h in a.history])) + 1


def test_early_stopping_stops_and_keeps_best(tiny_ratings) -> None:
    tr, va, n_items = _matrices(tiny_ratings[0])
    mcfg = ModelConfig(n_items=n_items, hidden=(64, 32, 64), activation="relu")
    tcfg = TrainConfig(epochs=300, batch_size=8, lr=0.05, device="cpu", patience=3, seed=1)
    res = fit(tr, va, mcfg, tcfg, progress=False)
    assert res.stopped_early
    assert len(res.history) == res.best_epoch + 3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_one_epoch_smoke(preset, tiny_ratings, tmp_path) -> None:
    train, test, catalog = tiny_ratings
    p = PRESETS[preset]
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, epochs=1, device="cpu"))
    out = run_training(train, test, catalog, p, tmp_path / "a", dataset="tiny", progress=False)
    assert (tmp_path / "a" / "manifest.json").is_file()
    roles = resolve_roles(p, None)
    if "rating" in roles:
        assert np.isfinite(out.metrics["test_rmse"])
    else:  # a top-N model alone answers no ratings
        assert np.isnan(out.metrics["test_rmse"])
    assert out.metrics["test_ratings"] == len(test)
    assert 0.0 <= out.metrics["test_ndcg@10"] <= 1.0
    scorer = Scorer.load(tmp_path / "a", device="cpu")
    assert set(scorer.artifact.models) == set(roles)
    assert scorer.artifact.meta["ranking"]["role"] == ("ranking" if "ranking" in roles else "rating")
    idx, _ = scorer.recommend_users(np.arange(3), 5)
    history = scorer.history.rows(np.arange(3)).densify()
    assert all(history[r, i] == 0 for r in range(3) for i in idx[r] if i >= 0)
