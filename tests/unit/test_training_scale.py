"""Training at scale: large-data settings switch on by size (the small path is untouched), the training time
budget stops, and which stages stay single-node under --nproc."""

from __future__ import annotations

import dataclasses

import torch

from movierec.trainer import distributed
from movierec.trainer.config import IAUTOREC, TrainConfig, get_preset
from movierec.trainer.fit.gradient import GradientTrainer
from movierec.trainer.pipeline import resolve_roles
from movierec.trainer.synthetic import synthetic_csr
from movierec.trainer.train import fit


def test_large_settings_switch_on_by_size_only() -> None:
    small = IAUTOREC.train.for_shape(943, 1_682)  # ml-100k: the paper's full-batch Rprop, unchanged
    assert small is IAUTOREC.train
    large = IAUTOREC.train.for_shape(6_040, 3_706)  # the ml-1m shape: mini-batches of movies with Adam
    assert (large.optimizer, large.batch_size, large.lr, large.patience) == ("adam", 128, 1e-3, 10)
    # l2 (mean-loss units) 10x smaller for ~10x the ratings; a 60 s budget
    assert large.extra == {"l2": 3e-4, "max_seconds": 60.0} and large.epochs == IAUTOREC.train.epochs
    assert TrainConfig().for_shape(10**6, 10**6) == TrainConfig()  # no large settings: itself


def test_every_gradient_trained_model_of_the_default_preset_is_budgeted_on_large_data() -> None:
    roles = resolve_roles(get_preset("best"), None)
    configs = [TrainConfig.from_dict(m["train"]) for m in roles["rating"][0].extra["members"][:2]]
    configs += [roles["cold-rating"][1], roles["cold-ranking"][1]]
    for cfg in configs:
        assert cfg.for_shape(943, 1_682) is cfg  # ml-100k: untouched
        assert 0 < cfg.for_shape(6_040, 3_706).settings.max_seconds <= 120


def test_ensemble_member_keeps_the_large_settings() -> None:
    rating = resolve_roles(get_preset("best"), None)["rating"][0]
    member = TrainConfig.from_dict(rating.extra["members"][0]["train"])
    assert member.settings.l2 == 2e-3 and member.for_shape(6_040, 3_706).optimizer == "adam"


def _iautorec(n_users: int, **train_extra: object) -> tuple:
    m = synthetic_csr(n_users, 60, 3_000, seed=1)
    model = dataclasses.replace(IAUTOREC.model, hidden=(16,), n_items=60, extra={"n_users": n_users})
    train = dataclasses.replace(IAUTOREC.train, epochs=30, extra={"l2": 1e-3, **train_extra})
    return m, model, train


def test_iautorec_trains_in_mini_batches_above_the_threshold_and_skips_the_refit() -> None:
    m, model_cfg, train_cfg = _iautorec(200, large_above=1_000, large={"optimizer": "adam", "batch_size": 16, "patience": 2})
    result = fit(m, None, model_cfg, train_cfg, progress=False)
    epochs = len(result.history)
    assert result.model.steps_taken() == epochs * 4  # 60 movies in batches of 16: 4 steps per epoch
    before = {k: v.clone() for k, v in result.model.state_dict().items()}
    GradientTrainer().refit(result.model, m, train_cfg)  # mini-batch training: nothing to repeat
    assert all(torch.equal(before[k], v) for k, v in result.model.state_dict().items())
    m, model_cfg, train_cfg = _iautorec(200)  # below the threshold: one full-batch step per epoch
    result = fit(m, None, model_cfg, dataclasses.replace(train_cfg, epochs=3), progress=False)
    assert result.model.steps_taken() == 3


def test_time_budget_stops_after_the_epoch_that_crosses_it() -> None:
    m, model_cfg, train_cfg = _iautorec(200, max_seconds=1e-9, large_above=1_000, large={"optimizer": "adam", "batch_size": 16})
    valid = synthetic_csr(200, 60, 600, seed=2)
    result = fit(m, valid, model_cfg, train_cfg, progress=False)  # every step takes longer than the budget
    assert len(result.history) == 1 and result.stopped_early and result.time_budget_hit
    assert result.best_epoch == 1
    assert result.model.steps_taken() == 1  # out of time mid-epoch: one step (every epoch trains at least one)


def test_single_node_stages_of_the_default_preset() -> None:
    kinds = distributed.stage_kinds(m for m, _ in resolve_roles(get_preset("best"), None).values())
    assert kinds == ["iautorec", "autoencoder", "knn-baseline", "bpmf", "ease", "hybrid-rating", "hybrid-ranking"]
    assert distributed.replicated_stages(kinds) == ["knn-baseline", "bpmf", "ease", "hybrid-rating", "hybrid-ranking"]
    assert distributed.replicated_stages(["autoencoder", "multvae", "iautorec"]) == []


def test_bpmf_finalize_keeps_the_fitted_samples_on_large_data() -> None:
    from movierec.core.models import build_model
    from movierec.trainer.config import BPMF
    from movierec.trainer.fit.sampler import SamplerTrainer

    assert BPMF.train.for_shape(943, 1_682).settings.finalize_full
    assert not BPMF.train.for_shape(6_040, 3_706).settings.finalize_full
    m = synthetic_csr(100, 40, 1_000, seed=3)
    model = build_model(dataclasses.replace(BPMF.model, n_items=40, extra={**BPMF.model.extra, "burn_in": 2, "samples": 3}))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    large = dataclasses.replace(BPMF.train, extra={**BPMF.train.extra, "large_above": 10})
    SamplerTrainer().finalize(model, m, large)  # 100 x 40 cells > 10: the chain is not re-run
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    SamplerTrainer().finalize(model, m, BPMF.train)  # small: re-sampled on every rating
    assert not torch.equal(before["item_factors"], model.state_dict()["item_factors"])
