"""Mult-VAE / Mult-DAE (Liang et al. 2018): top-N from implicit feedback, multinomial likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from movierec.core.config import FamilySettings, ModelConfig
from movierec.core.models.base import Recommender, activation


@dataclass(frozen=True)
class MultVAESettings(FamilySettings):
    """Mult-VAE / Mult-DAE settings: variational or not, and the KL weight's annealing."""

    variational: bool = True
    beta_max: float = 0.2
    anneal_steps: int = 2000


class MultVAE(Recommender):
    """Mult-VAE / Mult-DAE (Liang et al. 2018) for top-N: which movies a user will rate next.

    Input: the user's rated movies as a binary vector, L2-normalized, with input dropout during training.
    `hidden` = encoder sizes, the last one the latent code (decoder mirrored). Output: logits of a multinomial
    over movies (`scores`; higher = more likely). `extra`: variational (bool; Mult-VAE if true), beta_max,
    anneal_steps (KL weight grows linearly to beta_max over that many training steps).
    """

    orientation = "user"
    objective = "ranking"
    trained_by = "gradient"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.settings = MultVAESettings.parse(config.extra, f"model kind {config.kind!r}")
        self.variational = self.settings.variational
        self.beta_max = self.settings.beta_max
        self.anneal_steps = self.settings.anneal_steps
        self.steps = 0
        self.kl = torch.zeros(())
        sizes = [config.n_items, *config.hidden]
        enc: list[nn.Module] = []
        for i in range(len(sizes) - 2):
            enc += [nn.Linear(sizes[i], sizes[i + 1]), activation(config.activation)]
        self.encoder = nn.Sequential(*enc)
        code_in, code = sizes[-2], sizes[-1]
        self.to_code = nn.Linear(code_in, code * 2 if self.variational else code)
        dec_sizes = [code, *reversed(sizes[1:-1]), config.n_items]
        dec: list[nn.Module] = []
        for i in range(len(dec_sizes) - 1):
            dec.append(nn.Linear(dec_sizes[i], dec_sizes[i + 1]))
            if i < len(dec_sizes) - 2:
                dec.append(activation(config.activation))
        self.decoder = nn.Sequential(*dec)
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else nn.Identity()
        self.code_size = code
        self.code_act = activation(config.activation) if not self.variational else nn.Identity()

    def beta(self) -> float:
        return min(self.beta_max, self.beta_max * self.steps / max(self.anneal_steps, 1))

    def extra_loss(self) -> torch.Tensor | None:
        """beta * KL of the last training forward pass (Mult-VAE); None for Mult-DAE."""
        return self.beta() * self.kl if self.variational else None

    def step_counter(self) -> int:
        return self.steps

    def restore_step_counter(self, steps: int) -> None:
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = (x != 0).float()
        b = nn.functional.normalize(b, dim=1)
        h = self.encoder(self.input_dropout(b))
        z = self.to_code(h)
        if self.variational:
            mu, logvar = z[:, : self.code_size], z[:, self.code_size :]
            if self.training:
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                self.kl = (-0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(dim=1)).mean()
                self.steps += 1
            else:
                z = mu
        else:
            z = self.code_act(z)
            self.kl = torch.zeros((), device=x.device)
        return self.decoder(z)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)
