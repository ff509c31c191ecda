"""Koren's kNN-baseline: an item-item neighbourhood model on ridge-bias residuals (an ensemble member)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from movierec.core.config import FamilySettings, ModelConfig
from movierec.core.models.base import Recommender, drop_legacy_keys


@dataclass(frozen=True)
class KNNBaselineSettings(FamilySettings):
    """kNN-baseline settings: shrinkage, neighbourhood size, bias regularization and the prediction ridge."""

    l2: float = 1.0
    l2_grid: tuple[float, ...] = ()
    reg_item: float = 10.0
    reg_user: float = 15.0
    shrink: float = 100.0
    power: float = 1.0
    neighbors: int = 100
    bias_steps: int = 10
    # > 0: on a catalog of more movies than this, only the `max_items` most rated movies get neighbours (among
    # themselves); the others are predicted by the baseline alone. 0: every movie.
    max_items: int = 0


class KNNBaseline(Recommender):
    """Item-item neighbourhood model on baseline residuals (Koren 2008's kNN-baseline), solved in closed form.

    Baseline b_ui = mu + b_u + b_i with ridge biases fitted by alternating closed-form steps (`reg_item`,
    `reg_user`). Residuals e_ui = r_ui - b_ui give a shrunk Pearson-baseline similarity between movies:
    s_ij = rho_ij * n_ij / (n_ij + shrink) (rho over the n_ij users who rated both), raised to `power`;
    each movie keeps its `neighbors` most similar movies (positive similarities only). Prediction:
        r_ui = b_ui + sum_j s_ij e_uj / (sum_j s_ij + l2),   j over the user's rated neighbours of i,
    so users with few rated neighbours of i are shrunk toward the baseline (`l2`). Everything depends on the
    input row only (b_u is recomputed from it given the item biases), so new users fold in exactly.

    Pruned (fewer `kept` movies than the catalog, see `max_items`): `sim` is k x k over the kept movies; the
    neighbourhood term uses the user's kept movies only, and a movie outside them gets b_ui.
    """

    orientation = "user"
    objective = "rating"
    trained_by = "closed_form"
    mu: torch.Tensor
    item_bias: torch.Tensor
    sim: torch.Tensor
    kept: torch.Tensor  # [k] the movies `sim` covers (every movie unless pruned)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.settings = KNNBaselineSettings.parse(config.extra, f"model kind {config.kind!r}")
        ex = self.settings
        self.l2 = ex.l2
        self.reg_item = ex.reg_item
        self.reg_user = ex.reg_user
        self.shrink = ex.shrink
        self.power = ex.power
        self.neighbors = ex.neighbors
        self.bias_steps = ex.bias_steps
        n = config.n_items
        self.register_buffer("mu", torch.zeros(()))
        self.register_buffer("item_bias", torch.zeros(n))
        self.max_items = ex.max_items
        k = min(n, self.max_items) if self.max_items > 0 else n  # pruned: never allocate n x n
        self.register_buffer("sim", torch.zeros(k, k))
        self.register_buffer("kept", torch.arange(k))

    @property
    def pruned(self) -> bool:
        return self.kept.numel() < self.config.n_items

    def set_kept(self, kept: torch.Tensor) -> None:
        """Resize `sim` to the movies `kept` (zeros; the solver fills it)."""
        dev = self.sim.device
        k = int(kept.numel())
        self.sim = torch.zeros(k, k, device=dev)
        self.kept = kept.to(dev, torch.int64)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        drop_legacy_keys(state_dict, prefix, ("dummy",))  # a placeholder parameter older artifacts carry
        state_dict.setdefault(prefix + "kept", torch.arange(self.config.n_items))  # older artifacts: not pruned
        k = int(state_dict[prefix + "kept"].numel())
        if k != self.kept.numel():
            self.set_kept(torch.zeros(k, dtype=torch.int64))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def baseline(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b_ui for every movie, rated mask) for a batch of rating rows; b_u is the ridge step given b_i."""
        rated = (x != 0).to(x.dtype)
        resid = (x - self.mu - self.item_bias) * rated
        bu = resid.sum(dim=1, keepdim=True) / (self.reg_user + rated.sum(dim=1, keepdim=True))
        return self.mu + bu + self.item_bias, rated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base, rated = self.baseline(x)
        e = (x - base) * rated
        if self.pruned:
            ek, rk = e[:, self.kept], rated[:, self.kept]
            out = base.clone()
            out[:, self.kept] += (ek @ self.sim.T) / (rk @ self.sim.T + self.l2)
            return out
        return base + (e @ self.sim.T) / (rated @ self.sim.T + self.l2)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)
