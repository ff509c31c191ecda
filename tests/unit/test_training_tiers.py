"""Size tiers of the training settings: members left out of the blend (and said so), model settings replaced at
a size, validation on a sample of users, the kNN-baseline's second solve skipped; small data untouched."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from movierec.core.artifact import load_artifact
from movierec.core.scoring import Scorer
from movierec.trainer.config import BEST, ENSEMBLE, TrainConfig, get_preset, model_for_shape
from movierec.trainer.evaluate import predict_frame
from movierec.trainer.pipeline import resolve_roles, run_training, sample_users
from movierec.trainer.synthetic import synthetic_catalog, synthetic_ratings

ML100K, ML1M, ML10M, ML25M = (943, 1_682), (6_040, 3_706), (69_878, 10_677), (162_541, 59_047)


def test_small_data_gets_the_preset_itself() -> None:
    for shape in (ML100K, ML1M):
        for model, train in resolve_roles(BEST, None).values():
            assert model_for_shape(model, train, *shape) == (model, [])


def test_tiers_by_size() -> None:
    model, train = ENSEMBLE.model, ENSEMBLE.train
    m10, left10 = model_for_shape(model, train, *ML10M)
    assert left10 == [] and [m["model"]["kind"] for m in m10.extra["members"]] == [
        "iautorec", "autoencoder", "knn-baseline", "bpmf"]  # fmt: skip
    bpmf = m10.extra["members"][3]["model"]["extra"]
    assert bpmf["implicit"] is False and bpmf["burn_in"] == 10 and bpmf["samples"] == 20
    m25, left25 = model_for_shape(model, train, *ML25M)
    assert left25 == ["member 1 (iautorec)", "member 2 (autoencoder)"]
    assert [m["model"]["kind"] for m in m25.extra["members"]] == ["knn-baseline", "bpmf"]
    knn_train = TrainConfig.from_dict(m25.extra["members"][0]["train"])
    assert not knn_train.for_shape(*ML25M).settings.finalize_full and knn_train.for_shape(*ML1M).settings.finalize_full
    assert ENSEMBLE.train.for_shape(*ML25M).settings.valid_users == 20_000
    assert ENSEMBLE.train.for_shape(*ML100K).settings.valid_users == 0


def test_two_tiers_compose() -> None:
    cfg = TrainConfig(batch_size=8, extra={"l2": 0.1, "large_above": 10, "large": {"batch_size": 16, "extra": {"max_seconds": 5.0}},
                                            "huge_above": 100, "huge": {"lr": 0.5, "skip": True, "model_extra": {"dim": 2}}})  # fmt: skip
    assert cfg.for_shape(3, 3) is cfg
    large = cfg.for_shape(5, 5)
    assert (large.batch_size, large.lr, large.settings.max_seconds, large.settings.l2) == (16, cfg.lr, 5.0, 0.1)
    huge = cfg.for_shape(20, 20)
    assert (huge.batch_size, huge.lr, huge.settings.max_seconds) == (16, 0.5, 5.0)
    assert huge.for_shape(20, 20) == huge  # the tiers are spent: idempotent
    assert cfg.model_extra_for_shape(5, 5) == ({}, False)
    assert cfg.model_extra_for_shape(20, 20) == ({"dim": 2}, True)


def test_every_member_left_out_is_an_error() -> None:
    members = [{**m, "train": {**m["train"], "extra": {**m["train"]["extra"], "huge_above": 1, "huge": {"skip": True}}}}
               for m in ENSEMBLE.model.extra["members"]]  # fmt: skip
    model = dataclasses.replace(ENSEMBLE.model, extra={**ENSEMBLE.model.extra, "members": members})
    with pytest.raises(ValueError, match="every member"):
        model_for_shape(model, ENSEMBLE.train, 10, 10)


def test_sample_users() -> None:
    df = pd.DataFrame({"user": [1, 1, 2, 3, 3, 3, 4], "item": range(7)})
    assert sample_users(df, 0, 0) is df and sample_users(df, 4, 0) is df
    two = sample_users(df, 2, 0)
    assert two["user"].nunique() == 2 and two.equals(sample_users(df, 2, 0))
    assert len(two) == int(df["user"].isin(two["user"].unique()).sum())  # every rating of a kept user


def _with_tiers(preset: Any, above: int) -> Any:
    """`preset` with the huge tier of its ensemble members (and the ensemble's valid_users) from `above` cells."""
    members = []
    for m in preset.model.extra["members"]:
        extra = dict(m["train"]["extra"])
        if "huge" in extra:
            extra["huge_above"] = above
        members.append({**m, "train": {**m["train"], "extra": extra}})
    model = dataclasses.replace(preset.model, extra={**preset.model.extra, "members": members})
    train = TrainConfig.from_dict({**preset.train.to_dict(), "epochs": 2,
                                   "extra": {"large_above": above, "large": {"extra": {"valid_users": 50}}}})  # fmt: skip
    return dataclasses.replace(preset, model=model, train=train, ranking_model=None, side_models=())


def test_blend_without_the_members_left_out(tmp_path: Any, capsys: Any) -> None:
    """Tiers moved down to a small matrix: the ensemble trains without I-AutoRec and the deep autoencoder,
    BPMF without its implicit part and a short chain, validation on 50 users; the artifact serves and its
    manifest names the members left out; stderr says so in one line."""
    df = synthetic_ratings(300, 120, 6_000, seed=3)
    test = df.groupby("user").tail(1)
    train = df.drop(test.index)
    preset = _with_tiers(get_preset("ensemble"), above=1_000)
    out = run_training(train, test, synthetic_catalog(120), preset, tmp_path / "art", progress=False)
    art = load_artifact(tmp_path / "art")
    config = art.models["rating"].config
    kinds = [m["model"]["kind"] for m in config.extra["members"]]
    assert kinds == ["knn-baseline", "bpmf"] and len(config.extra["weights"]) == 3  # two members + intercept
    assert config.extra["members"][1]["model"]["extra"]["implicit"] is False
    training = json.loads((tmp_path / "art" / "manifest.json").read_text())["training"]["roles"]["rating"]
    assert training["members_left_out"] == ["member 1 (iautorec)", "member 2 (autoencoder)"]
    assert training["valid_ratings"] > 0 and training["cpu_seconds"] > 0
    assert 0.3 < out.metrics["test_rmse"] < 1.5
    err = capsys.readouterr().err
    assert "left out" in err and "member 1 (iautorec), member 2 (autoencoder)" in err
    # test predictions in batches of users (the scorer densifies a batch, never every test user at once)
    scorer = Scorer(art, torch.device("cpu"))
    users, items = test["user"].to_numpy(), test["item"].to_numpy()
    whole, _ = predict_frame(scorer, users, items)
    batched, _ = predict_frame(scorer, users, items, batch_size=7)
    np.testing.assert_allclose(batched, whole, rtol=1e-6, atol=1e-6)
