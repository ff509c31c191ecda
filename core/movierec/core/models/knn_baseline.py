"""Koren's kNN-baseline: an item-item neighbourhood model on ridge-bias residuals (an ensemble member)."""

from __future__ import annotations

from typing import Any

import torch

from movierec.core.config import ModelConfig
from movierec.core.models.base import Recommender, drop_legacy_keys


class KNNBaseline(Recommender):
    """Item-item neighbourhood model on baseline residuals (Koren 2008's kNN-baseline), solved in closed form.

    Baseline b_ui = mu + b_u + b_i with ridge biases fitted by alternating closed-form steps (`reg_item`,
    `reg_user`). Residuals e_ui = r_ui - b_ui give a shrunk Pearson-baseline similarity between movies:
    s_ij = rho_ij * n_ij / (n_ij + shrink) (rho over the n_ij users who rated both), raised to `power`;
    each movie keeps its `neighbors` most similar movies (positive similarities only). Prediction:
        r_ui = b_ui + sum_j s_ij e_uj / (sum_j s_ij + l2),   j over the user's rated neighbours of i,
    so users with few rated neighbours of i are shrunk toward the baseline (`l2`). Everything depends on the
    input row only (b_u is recomputed from it given the item biases), so new users fold in exactly.
    """

    orientation = "user"
    objective = "rating"
    trained_by = "closed_form"
    mu: torch.Tensor
    item_bias: torch.Tensor
    sim: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ex = config.extra
        self.l2 = float(ex.get("l2", 1.0))
        self.reg_item = float(ex.get("reg_item", 10.0))
        self.reg_user = float(ex.get("reg_user", 15.0))
        self.shrink = float(ex.get("shrink", 100.0))
        self.power = float(ex.get("power", 1.0))
        self.neighbors = int(ex.get("neighbors", 100))
        self.bias_steps = int(ex.get("bias_steps", 10))
        n = config.n_items
        self.register_buffer("mu", torch.zeros(()))
        self.register_buffer("item_bias", torch.zeros(n))
        self.register_buffer("sim", torch.zeros(n, n))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        drop_legacy_keys(state_dict, prefix, ("dummy",))  # a placeholder parameter older artifacts carry
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
        return base + (e @ self.sim.T) / (rated @ self.sim.T + self.l2)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)
