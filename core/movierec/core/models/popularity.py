"""Most popular movies: a ranking reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from movierec.core.config import FamilySettings, ModelConfig
from movierec.core.models.base import Recommender, drop_legacy_keys


@dataclass(frozen=True)
class PopularitySettings(FamilySettings):
    """Most-popular has no settings: `extra` must be empty."""


class Popularity(Recommender):
    """Most popular: every user gets the movies rated by the most training users (a reference, not a model)."""

    orientation = "user"
    objective = "ranking"
    trained_by = "closed_form"
    counts: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.settings = PopularitySettings.parse(config.extra, f"model kind {config.kind!r}")
        self.register_buffer("counts", torch.zeros(config.n_items))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        drop_legacy_keys(state_dict, prefix, ("dummy",))  # a placeholder parameter older artifacts carry
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(x.shape[0], -1).clone()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)
