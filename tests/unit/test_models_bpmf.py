"""BPMF (Bayesian matrix factorization by Gibbs sampling): the sampler, its fold-in, its place in the ensemble."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from movierec.core.models import BPMF, build_model
from movierec.core.scoring import Scorer
from movierec.core.sparse import Csr, IdMap
from movierec.trainer.config import PRESETS, ModelConfig, TrainConfig
from movierec.trainer.data import holdout_mask
from movierec.trainer.fit.sampler import _wishart, run_sampler
from movierec.trainer.pipeline import ratings_matrix, run_training
from movierec.trainer.train import fit, predict_pairs

SMALL = {"dim": 4, "alpha": 4.0, "burn_in": 20, "samples": 20}


def _planted(n_users: int = 150, n_items: int = 100, rank: int = 3, observed: float = 0.3, seed: int = 0):
    """A rank-`rank` matrix around 3 plus noise 0.25; (train, held-out) split of a random `observed` share."""
    rng = np.random.default_rng(seed)
    full = 3.0 + rng.normal(size=(n_users, rank)) @ rng.normal(size=(rank, n_items)) * 0.6
    full += rng.normal(scale=0.25, size=full.shape)
    seen = rng.random(full.shape) < observed
    held = (~seen) & (rng.random(full.shape) < 0.2)
    r, c = np.nonzero(seen)
    hr, hc = np.nonzero(held)
    train = Csr.from_coo(r, c, full[r, c], n_users, n_items)
    valid = Csr.from_coo(hr, hc, full[hr, hc], n_users, n_items)
    return train, valid


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def _model(train: Csr, **extra) -> BPMF:
    model = build_model(ModelConfig(kind="bpmf", n_items=train.n_cols, extra={**SMALL, **extra}))
    assert isinstance(model, BPMF)
    run_sampler(model, train)
    return model


def test_gibbs_sampler_recovers_a_planted_low_rank_matrix() -> None:
    train, valid = _planted()
    model = _model(train)
    pred = predict_pairs(model, train, valid, torch.device("cpu"))
    mean_only = _rmse(np.full(valid.nnz, train.values.mean()), valid.values)
    # the signal has std ~1.0 and the noise 0.25: the factorization must explain most of it
    assert _rmse(pred, valid.values) < 0.5 * mean_only
    assert _rmse(pred, valid.values) < 0.45


def test_per_user_noise_precisions_discount_noisy_raters() -> None:
    """With noise_prior > 0 each user's noise precision is sampled: users who rate at random weigh less on the
    movie factors, so the other users' held-out ratings are predicted better than with one shared precision."""
    rng = np.random.default_rng(3)
    n_users, n_items = 200, 80
    full = 3.0 + rng.normal(size=(n_users, 3)) @ rng.normal(size=(3, n_items)) * 0.6
    noisy = np.arange(n_users) < 80
    full[noisy] = rng.uniform(1, 5, size=(int(noisy.sum()), n_items))  # raters who ignore the movie
    full[~noisy] += rng.normal(scale=0.2, size=(int((~noisy).sum()), n_items))
    seen = rng.random(full.shape) < 0.3
    held = (~seen) & (rng.random(full.shape) < 0.3) & ~noisy[:, None]
    r, c = np.nonzero(seen)
    hr, hc = np.nonzero(held)
    train = Csr.from_coo(r, c, full[r, c], n_users, n_items)
    valid = Csr.from_coo(hr, hc, full[hr, hc], n_users, n_items)
    errors = {}
    for prior in (0.0, 10.0):
        model = _model(train, noise_prior=prior)
        errors[prior] = _rmse(predict_pairs(model, train, valid, torch.device("cpu")), valid.values)
    assert errors[10.0] < errors[0.0] - 0.02


def test_sampler_is_seeded_and_a_second_solve_on_the_same_ratings_is_skipped() -> None:
    train, _ = _planted(n_users=40, n_items=30)
    a, b = _model(train), _model(train)
    assert torch.equal(a.item_factors, b.item_factors)
    assert not torch.equal(a.item_factors, _model(train, seed=1).item_factors)
    before = a.item_factors.clone()
    a.item_factors.zero_()
    run_sampler(a, train)  # same ratings: no new run (fit and finalize both run the sampler)
    assert float(a.item_factors.abs().max()) == 0.0
    a.item_factors.copy_(before)


def test_scores_are_the_per_sample_posterior_mean_of_the_user_factor() -> None:
    """For each kept sample: u = (Lambda + alpha sum v v^T)^-1 (alpha sum (r - mu) v + Lambda mu_U), averaged."""
    train, _ = _planted(n_users=60, n_items=40)
    model = _model(train)
    x = torch.zeros(1, train.n_cols)
    rated = [1, 4, 7, 20]
    x[0, rated] = torch.tensor([5.0, 1.0, 4.0, 2.0])
    got = model.scores(x)[0].double()
    v = model.item_factors.double()
    lam, mu_u, mu = model.user_prec.double(), model.user_mean.double(), float(model.mu)
    expect = torch.zeros(train.n_cols, dtype=torch.float64)
    for s in range(v.shape[0]):
        vs = v[s, rated]
        prec = lam[s] + model.alpha * vs.T @ vs
        rhs = model.alpha * vs.T @ (x[0, rated].double() - mu) + lam[s] @ mu_u[s]
        expect += v[s] @ torch.linalg.solve(prec, rhs)
    expect = expect / v.shape[0] + mu
    assert torch.allclose(got, expect, atol=1e-4)


def test_fold_in_is_per_row_and_follows_the_ratings() -> None:
    train, _ = _planted(n_users=60, n_items=40)
    model = _model(train)
    rows = torch.from_numpy(train.rows(np.arange(10)).densify()).float()
    together = model.scores(rows)
    alone = torch.cat([model.scores(rows[i : i + 1]) for i in range(10)])
    assert torch.allclose(together, alone, atol=1e-5)
    # a new user who loves / hates the same movies: predictions move with the ratings
    liked, hated = torch.zeros(1, train.n_cols), torch.zeros(1, train.n_cols)
    liked[0, :8], hated[0, :8] = 5.0, 1.0
    assert float(model.scores(liked)[0, :8].mean()) > float(model.scores(hated)[0, :8].mean()) + 1.0


def test_wishart_draws_have_the_right_mean() -> None:
    rng = np.random.default_rng(0)
    scale = np.array([[2.0, 0.5], [0.5, 1.0]])
    draws = np.stack([_wishart(scale, 7.0, rng) for _ in range(4000)])
    assert np.allclose(draws.mean(axis=0), 7.0 * scale, atol=0.25)


def test_bpmf_preset_beats_the_mean_on_tiny_ratings(tiny_ratings) -> None:
    train = tiny_ratings[0]
    users, items = IdMap.from_ids(train.user), IdMap.from_ids(train.item)
    mask = holdout_mask(train.user.to_numpy(), 0.1, 0)
    tr, va = ratings_matrix(train[~mask], users, items), ratings_matrix(train[mask], users, items)
    cfg = dataclasses.replace(PRESETS["bpmf"].model, n_items=tr.n_cols)
    res = fit(tr, va, cfg, TrainConfig(epochs=1, device="cpu"), progress=False)
    pred = np.clip(predict_pairs(res.model, tr, va, torch.device("cpu")), 1, 5)
    assert _rmse(pred, va.values) < _rmse(np.full(va.nnz, tr.values.mean()), va.values)


@pytest.mark.parametrize("preset", ["bpmf", "ensemble"])
def test_artifact_reproduces_known_users_and_folds_in_new_ones(preset, tiny_ratings, tmp_path) -> None:
    """Through the artifact and the server's Scorer: a known user's training history gets the same predictions
    as the trained model; a new vector is scored from its own ratings."""
    train, test, catalog = tiny_ratings
    p = PRESETS[preset]
    if preset == "ensemble":  # keep the test quick: I-AutoRec and the deep AE for two epochs each
        p = dataclasses.replace(p, train=dataclasses.replace(p.train, epochs=2))
    out = run_training(train, test, catalog, p, tmp_path / "a", dataset="tiny", progress=False)
    scorer = Scorer.load(tmp_path / "a", device="cpu")
    kinds = [m["model"]["kind"] for m in scorer.artifact.models["rating"].config.extra.get("members", [])]
    assert preset == "bpmf" or "bpmf" in kinds
    trained = out.fit.model
    rows = scorer.history.rows(np.arange(8))
    targets = Csr.from_coo(np.repeat(np.arange(8), 5), np.tile(np.arange(5), 8), np.ones(40), 8, scorer.n_items)
    served = scorer.predict(rows, targets)
    x = torch.from_numpy(rows.densify()).float()
    direct = np.clip(trained.scores(x)[:, :5].detach().numpy().reshape(-1), 1, 5)
    assert np.allclose(served, direct, atol=1e-4)
    # a new user: the fold-in follows the ratings given (movies rated 5 predicted above the same movies rated 1)
    rated = np.arange(6)
    high = Csr.from_coo(np.zeros(6), rated, np.full(6, 5.0), 1, scorer.n_items)
    low = Csr.from_coo(np.zeros(6), rated, np.full(6, 1.0), 1, scorer.n_items)
    assert scorer.predict(high, high).mean() > scorer.predict(low, low).mean() + 0.5


def test_implicit_factors_enter_the_user_prior_mean() -> None:
    """implicit=True: per sample, u = (Lambda + alpha sum v v^T)^-1 (alpha sum (r - mu) v + Lambda (mu_U +
    |N|^-1/2 sum_{j in N} y_j)), averaged; without the option there are no implicit factors at all."""
    train, _ = _planted(n_users=60, n_items=40)
    assert _model(train).implicit_factors.numel() == 0
    model = _model(train, implicit=True)
    assert model.implicit_factors.shape == (SMALL["samples"], 40, SMALL["dim"])
    assert float(model.implicit_factors.abs().max()) > 0.0
    x = torch.zeros(1, train.n_cols)
    rated = [1, 4, 7, 20]
    x[0, rated] = torch.tensor([5.0, 1.0, 4.0, 2.0])
    got = model.scores(x)[0].double()
    v, y = model.item_factors.double(), model.implicit_factors.double()
    lam, mu_u, mu = model.user_prec.double(), model.user_mean.double(), float(model.mu)
    expect = torch.zeros(train.n_cols, dtype=torch.float64)
    for s in range(v.shape[0]):
        vs = v[s, rated]
        prec = lam[s] + model.alpha * vs.T @ vs
        prior_mean = mu_u[s] + y[s, rated].sum(dim=0) / len(rated) ** 0.5
        rhs = model.alpha * vs.T @ (x[0, rated].double() - mu) + lam[s] @ prior_mean
        expect += v[s] @ torch.linalg.solve(prec, rhs)
    expect = expect / v.shape[0] + mu
    assert torch.allclose(got, expect, atol=1e-4)
    # the same ratings with one more rated movie: the implicit term alone moves the prediction
    rows = torch.from_numpy(train.rows(np.arange(6)).densify()).float()
    assert torch.allclose(model.scores(rows), torch.cat([model.scores(rows[i : i + 1]) for i in range(6)]), atol=1e-5)


def test_implicit_factors_read_taste_from_which_movies_were_rated() -> None:
    """Two tastes: half the users like movies 0-29 (3 + 1 stars) and dislike 30-59 (3 - 1), the other half the
    reverse, ratings with noise 1, and users mostly rate what they like. Light users (about 2 ratings each) say
    little through their noisy ratings but much through which half they rated: the implicit model predicts
    their other movies clearly better than plain BPMF."""
    rng = np.random.default_rng(0)
    n_users, n_items = 400, 60
    taste = np.where(np.arange(n_users) % 2 == 0, 1.0, -1.0)
    side = np.where(np.arange(n_items) < 30, 1.0, -1.0)
    agree = taste[:, None] * side[None, :]
    full = 3.0 + agree + rng.normal(scale=1.0, size=agree.shape)
    light = np.arange(n_users) >= 200
    seen = rng.random(agree.shape) < np.where(agree > 0, 0.5, 0.05) * np.where(light, 0.12, 1.0)[:, None]
    held = ~seen & light[:, None]
    r, c = np.nonzero(seen)
    hr, hc = np.nonzero(held)
    train = Csr.from_coo(r, c, full[r, c], n_users, n_items)
    valid = Csr.from_coo(hr, hc, 3.0 + agree[hr, hc], n_users, n_items)
    errors = {}
    for implicit in (False, True):
        model = _model(train, implicit=implicit, dim=2, alpha=1.0)
        errors[implicit] = _rmse(predict_pairs(model, train, valid, torch.device("cpu")), valid.values)
    assert errors[True] < errors[False] - 0.1, errors
