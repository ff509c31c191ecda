"""Recommender models as torch modules built from a `ModelConfig`. No I/O here.

Every model maps a batch of user rating vectors `x` (B x n_items, 0 = unrated) to an output of the same shape:
`forward` is what the training loss sees, `scores` is what inference uses (predicted ratings for a rating
model, preference scores for a ranking model; higher is better).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from movierec.trainer.config import Activation, ModelConfig

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def activation(name: Activation | str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(_ACTIVATIONS)}") from None


class Autoencoder(nn.Module):
    """User-based autoencoder: n_items -> hidden[0] -> ... -> hidden[-1] -> n_items.

    The encoder is the first half of `hidden` up to the smallest layer (the code), the decoder the rest, so
    20-10-20 encodes to 10. Optional input dropout makes it a denoising autoencoder; dropout on the code
    regularizes (Kuchaiev & Ginsburg 2017).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        sizes = [config.n_items, *config.hidden]
        code_at = 1 + min(range(len(config.hidden)), key=lambda i: config.hidden[i])
        enc: list[nn.Module] = []
        for i in range(code_at):
            enc += [nn.Linear(sizes[i], sizes[i + 1]), activation(config.activation)]
        dec: list[nn.Module] = []
        for i in range(code_at, len(sizes) - 1):
            dec += [nn.Linear(sizes[i], sizes[i + 1]), activation(config.activation)]
        dec += [nn.Linear(sizes[-1], config.n_items), activation(config.output_activation)]
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else nn.Identity()
        self.encoder = nn.Sequential(*enc)
        self.code_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.input_dropout(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.code_dropout(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


# Model families by `ModelConfig.kind`. Each takes the config and returns an nn.Module with `scores`.
MODEL_TYPES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "autoencoder": Autoencoder,
}


def build_model(config: ModelConfig) -> nn.Module:
    try:
        factory = MODEL_TYPES[config.kind]
    except KeyError:
        raise ValueError(f"unknown model kind {config.kind!r}; choose one of: {', '.join(MODEL_TYPES)}") from None
    return factory(config)


def count_parameters(model: nn.Module) -> int:
    return sum(int(p.numel()) for p in model.parameters())


def describe(model: nn.Module) -> dict[str, Any]:
    return {"parameters": count_parameters(model), "class": type(model).__name__}
