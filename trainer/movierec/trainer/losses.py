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


def multinomial_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_i y_i log softmax(logits)_i, with y = 1 for rated movies (Liang et al. 2018)."""
    y = (target != 0).to(logits.dtype)
    return -(torch.log_softmax(logits, dim=1) * y).sum(dim=1).mean()


def multinomial_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Multinomial likelihood of the rated movies, plus beta * KL for a variational model (Mult-VAE).

    Counted per user (rows with at least one rating); the model's `beta()` gives the annealed KL weight.
    """
    keep = (targets != 0).any(dim=1)
    count = int(keep.sum())
    if count == 0:
        return inputs.sum() * 0.0, 0
    logits = model(inputs[keep])
    loss = multinomial_nll(logits, targets[keep])
    kl = getattr(model, "kl", None)
    if getattr(model, "variational", False) and kl is not None:
        loss = loss + model.beta() * kl  # type: ignore[operator]
    return loss, count


LOSSES: dict[str, LossFn] = {
    "masked_mse": masked_mse_loss,
    "multinomial": multinomial_loss,
}
# Losses whose value is a mean squared error (the fit loop reports sqrt of it as a training RMSE).
MSE_LOSSES = frozenset({"masked_mse"})


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None
