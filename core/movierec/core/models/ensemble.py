"""A linear blend of rating models (the ensemble and best presets)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from movierec.core.config import ModelConfig
from movierec.core.models.base import Recommender


class Ensemble(Recommender):
    """A linear blend of rating models: sum_k w_k * member_k.scores(x) + w_0.

    `extra["members"]` lists {"model": ModelConfig dict, "train": TrainConfig dict}; the ensemble trainer fits
    each member on the same training/validation split and the blend weights by least squares on the
    validation ratings (`extra["weights"]`, stored in the `blend` buffer). Members may be user- or item-based.
    `extra["refit_full"]`: once the weights are fitted, refittable members are retrained on every training
    rating for the step count chosen on validation.
    """

    orientation = "user"
    objective = "rating"
    trained_by = "ensemble"
    blend: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        # the registry builds the members; imported here because it imports this module
        from movierec.core.models.registry import build_model

        super().__init__()
        self.config = config
        members = config.extra.get("members", [])
        if not members:
            raise ValueError("an ensemble needs extra['members'] (a list of {'model': ..., 'train': ...})")
        self.member_configs = [self.member_config(i) for i in range(len(members))]
        self.members = nn.ModuleList([build_model(c) for c in self.member_configs])
        weights = config.extra.get("weights") or [1.0 / len(members)] * len(members) + [0.0]
        self.register_buffer("blend", torch.tensor(weights, dtype=torch.float32))

    def member_config(self, i: int) -> ModelConfig:
        spec = dict(self.config.extra["members"][i]["model"])
        extra = {**spec.get("extra", {})}
        if "n_users" in self.config.extra:
            extra["n_users"] = self.config.extra["n_users"]
        return ModelConfig.from_dict({**spec, "n_items": self.config.n_items, "extra": extra})

    def member_train_config(self, i: int) -> dict[str, Any]:
        """Member i's training settings as configured (a TrainConfig dict; the trainer parses it)."""
        return dict(self.config.extra["members"][i].get("train", {}))

    @property
    def refit_full(self) -> bool:
        return bool(self.config.extra.get("refit_full", False))

    def recommenders(self) -> list[Recommender]:
        out: list[Recommender] = []
        for member in self.members:
            assert isinstance(member, Recommender)
            out.append(member)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blend[-1] + torch.zeros_like(x)
        for w, member in zip(self.blend[:-1], self.recommenders(), strict=True):
            out = out + w * member.scores(x)
        return out
