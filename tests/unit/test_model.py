from __future__ import annotations

import json

import pytest
import torch

from movierec.core.models import build_model, count_parameters
from movierec.core.models.bpmf import BPMF, BPMFSettings
from movierec.core.models.ease import EASE
from movierec.core.models.registry import member_needs_users
from movierec.trainer.config import PRESETS, ModelConfig, TrainConfig
from movierec.trainer.losses import masked_mse


def test_classic_shapes_and_parameter_count() -> None:
    cfg = ModelConfig(n_items=50, hidden=(20, 10, 20))
    model = build_model(cfg)
    x = torch.zeros(3, 50)
    assert model(x).shape == (3, 50)
    # 50*20+20 + 20*10+10 + 10*20+20 + 20*50+50
    assert count_parameters(model) == 1020 + 210 + 220 + 1050


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig(n_items=7, hidden=(8, 4, 8), activation="selu", dropout=0.2)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({"n_items": 3, "bogus": 1})
    with pytest.raises(ValueError, match="dropout"):
        build_model(ModelConfig(n_items=3, dropout=1.5))
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model(ModelConfig(kind="nope", n_items=3))


def test_masked_mse_ignores_unrated() -> None:
    out = torch.tensor([[1.0, 9.0, 3.0]])
    target = torch.tensor([[2.0, 0.0, 5.0]])
    loss, n = masked_mse(out, target)
    assert n == 2
    assert float(loss) == pytest.approx((1 + 4) / 2)


def test_every_preset_builds() -> None:
    for preset in PRESETS.values():
        for cfg in (preset.model, preset.ranking_model):
            if cfg is None:
                continue
            users = {"n_users": 4} if member_needs_users(cfg) else {}  # what the pipeline adds
            model = build_model(ModelConfig.from_dict({**cfg.to_dict(), "n_items": 30, "extra": {**cfg.extra, **users}}))
            x = torch.rand(2, 30) * (torch.rand(2, 30) < 0.5)
            assert model.scores(x).shape == (2, 30)


def test_every_family_declares_its_traits_and_a_family_without_them_is_refused() -> None:
    from movierec.core.models import FAMILIES, Recommender

    for kind, fam in FAMILIES.items():
        cls = fam.model
        assert cls.orientation in ("user", "item") and cls.objective in ("rating", "ranking"), kind
        assert cls.trained_by in ("gradient", "closed_form", "sampler", "ensemble", "side_gradient"), kind
        assert cls.side_information == (cls.trained_by == "side_gradient"), kind
    with pytest.raises(TypeError, match="orientation"):

        class _NoOrientation(Recommender):
            objective = "rating"
            trained_by = "gradient"

            def scores(self, x: torch.Tensor) -> torch.Tensor:
                return x


def test_family_settings_are_typed_and_refuse_unknown_or_mistyped_keys() -> None:
    ease = build_model(ModelConfig(kind="ease", n_items=5, extra={"l2": 3, "l2_grid": [1, 2], "target": "liked"}))
    assert isinstance(ease, EASE) and ease.settings.l2 == 3.0 and ease.settings.l2_grid == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"model kind 'ease': unknown setting\(s\) l3; allowed: l2, "):
        build_model(ModelConfig(kind="ease", n_items=5, extra={"l3": 1.0}))
    with pytest.raises(ValueError, match="setting 'target' must be one of"):
        build_model(ModelConfig(kind="ease", n_items=5, extra={"target": "loved"}))
    with pytest.raises(ValueError, match="setting 'variational' must be true or false"):
        build_model(ModelConfig(kind="multvae", n_items=5, hidden=(4, 2), extra={"variational": "yes"}))
    with pytest.raises(ValueError, match="model kind 'autoencoder': unknown setting.*allowed: none"):
        build_model(ModelConfig(kind="autoencoder", n_items=5, extra={"dropout": 0.5}))
    with pytest.raises(ValueError, match="training: unknown setting"):
        TrainConfig(extra={"l2_penalty": 1.0}).validate()
    # the JSON layout is unchanged: settings round-trip through the config's `extra`
    cfg = ModelConfig(kind="bpmf", n_items=5, extra={"dim": 4, "implicit": True})
    again = build_model(ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))))
    assert isinstance(again, BPMF) and again.settings == BPMFSettings(dim=4, implicit=True)
