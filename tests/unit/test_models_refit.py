"""Refitting I-AutoRec on every training rating for the step count chosen on validation (ensemble refit_full)."""

from __future__ import annotations

import numpy as np
import torch

from movierec.core.sparse import IdMap
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.data import holdout_mask
from movierec.trainer.fit.gradient import GradientTrainer
from movierec.trainer.losses import masked_mse
from movierec.trainer.pipeline import ratings_matrix
from movierec.trainer.train import finalize, fit

TCFG = TrainConfig(epochs=40, batch_size=4096, optimizer="rprop", lr=0.01, patience=5, device="cpu",
                   extra={"l2": 1e-3})


def _split(train):
    users, items = IdMap.from_ids(train.user), IdMap.from_ids(train.item)
    mask = holdout_mask(train.user.to_numpy(), 0.1, 0)
    full = ratings_matrix(train, users, items)
    return ratings_matrix(train[~mask], users, items), ratings_matrix(train[mask], users, items), full, users, items


def _full_loss(model, full) -> float:
    x = torch.zeros(full.n_cols, full.n_rows)
    r, c, v = full.to_coo()
    x[torch.from_numpy(c), torch.from_numpy(r)] = torch.from_numpy(v)
    with torch.no_grad():
        return float(masked_mse(model.eval()(x), x)[0])


def test_iautorec_counts_steps_and_refits_deterministically(tiny_ratings) -> None:
    tr, va, full, users, items = _split(tiny_ratings[0])
    cfg = ModelConfig(kind="iautorec", n_items=len(items), hidden=(16,), extra={"n_users": len(users)})
    res = fit(tr, va, cfg, TCFG, progress=False)
    model = res.model
    # the kept state is the best validation epoch; one full-batch step per epoch
    assert int(model.steps) == res.best_epoch > 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    GradientTrainer().refit(model, full, TCFG)
    assert int(model.steps) == res.best_epoch
    after = {k: v.clone() for k, v in model.state_dict().items()}
    assert not torch.equal(before["encoder.weight"], after["encoder.weight"])
    GradientTrainer().refit(model, full, TCFG)  # from a fresh, seeded initialization: the same weights again
    for k, v in model.state_dict().items():
        assert torch.equal(v, after[k]), k
    # fitted: far below a freshly initialized model's reconstruction error on the same ratings
    fresh = type(model)(cfg)
    assert _full_loss(model, full) < 0.5 * _full_loss(fresh, full)


def test_ensemble_refit_full_retrains_item_members_and_keeps_blend(tiny_ratings) -> None:
    tr, va, full, users, items = _split(tiny_ratings[0])
    spec = {"model": {"kind": "iautorec", "hidden": [16]}, "train": TCFG.to_dict()}
    user_spec = {"model": {"kind": "autoencoder", "hidden": [8]}, "train": {"epochs": 3, "device": "cpu"}}
    extra = {"members": [spec, user_spec], "n_users": len(users), "refit_full": True}
    cfg = ModelConfig(kind="ensemble", n_items=len(items), extra=extra)
    res = fit(tr, va, cfg, TrainConfig(epochs=40, device="cpu"), progress=False)
    model = res.model
    blend = model.blend.clone()
    user_state = {k: v.clone() for k, v in model.members[1].state_dict().items()}
    enc = model.members[0].encoder.weight.clone()
    finalize(model, full, TrainConfig(epochs=40, device="cpu"))
    assert torch.equal(model.blend, blend)
    assert not torch.equal(model.members[0].encoder.weight, enc)  # I-AutoRec retrained on all ratings
    for k, v in model.members[1].state_dict().items():  # a user autoencoder has no refit: unchanged
        assert torch.equal(v, user_state[k]), k
    x = torch.zeros(full.n_rows, full.n_cols)
    r, c, v = full.to_coo()
    x[torch.from_numpy(r), torch.from_numpy(c)] = torch.from_numpy(v)
    with torch.no_grad():
        out = model.scores(x)
    assert torch.isfinite(out).all()
    assert np.isfinite(res.best_valid_rmse)
