"""Training losses. Each returns (mean loss over the counted entries, number of entries counted)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]


def masked_mse(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean squared error over the rated entries of `target` only (0 = unrated)."""
    mask = target != 0
    count = int(mask.sum())
    if count == 0:
        return output.sum() * 0.0, 0
    diff = (output - target) * mask
    return (diff * diff).sum() / count, count


def masked_mse_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    return masked_mse(model(inputs), targets)


LOSSES: dict[str, LossFn] = {
    "masked_mse": masked_mse_loss,
}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None
