"""A linear blend of rating models (the ensemble and best presets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from movierec.core.config import FamilySettings, ModelConfig
from movierec.core.models.base import Recommender


@dataclass(frozen=True)
class EnsembleSettings(FamilySettings):
    """Ensemble settings: the members ({"model": ModelConfig dict, "train": TrainConfig dict} each), the blend
    weights (one per member, then the intercept; fitted on validation), the refit and the training users."""

    members: tuple[Any, ...] = ()
    weights: tuple[float, ...] = ()
    refit_full: bool = False
    n_users: int = 0


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
        self.settings = EnsembleSettings.parse(config.extra, f"model kind {config.kind!r}")
        members = self.settings.members
        if not members:
            raise ValueError("an ensemble needs extra['members'] (a list of {'model': ..., 'train': ...})")
        self.member_configs = [self.member_config(i) for i in range(len(members))]
        self.members = nn.ModuleList([build_model(c) for c in self.member_configs])
        weights = list(self.settings.weights) or [1.0 / len(members)] * len(members) + [0.0]
        self.register_buffer("blend", torch.tensor(weights, dtype=torch.float32))

    def member_config(self, i: int) -> ModelConfig:
        from movierec.core.models.registry import model_class

        spec = dict(self.settings.members[i]["model"])
        extra = {**spec.get("extra", {})}
        if self.settings.n_users and model_class(spec.get("kind", "autoencoder")).orientation == "item":
            extra["n_users"] = self.settings.n_users  # item-based members are built over the training users
        return ModelConfig.from_dict({**spec, "n_items": self.config.n_items, "extra": extra})

    def member_train_config(self, i: int) -> dict[str, Any]:
        """Member i's training settings as configured (a TrainConfig dict; the trainer parses it)."""
        return dict(self.settings.members[i].get("train", {}))

    @property
    def refit_full(self) -> bool:
        return self.settings.refit_full

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
