"""Training losses. Each returns (mean loss over the counted entries, number of entries counted).

A loss gets the callable that runs the forward pass (the model, or its DDP wrapper under data parallelism)
and the model itself, whose declared hooks (`extra_loss`) it reads after the forward pass."""

from __future__ import annotations

from collections.abc import Callable

import torch

from movierec.core.models import Recommender

Forward = Callable[[torch.Tensor], torch.Tensor]
LossFn = Callable[[Forward, Recommender, torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]


def masked_mse(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean squared error over the rated entries of `target` only (0 = unrated)."""
    mask = target != 0
    count = int(mask.sum())
    if count == 0:
        return output.sum() * 0.0, 0
    diff = (output - target) * mask
    return (diff * diff).sum() / count, count


def masked_mse_loss(
    forward: Forward, model: Recommender, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, int]:
    return masked_mse(forward(inputs), targets)


def multinomial_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_i y_i log softmax(logits)_i, with y = 1 for rated movies (Liang et al. 2018)."""
    y = (target != 0).to(logits.dtype)
    return -(torch.log_softmax(logits, dim=1) * y).sum(dim=1).mean()


def multinomial_loss(
    forward: Forward, model: Recommender, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Multinomial likelihood of the rated movies, plus the model's `extra_loss` (Mult-VAE: the annealed
    beta * KL of this forward pass).

    Counted per user (rows with at least one rating).
    """
    keep = (targets != 0).any(dim=1)
    count = int(keep.sum())
    if count == 0:
        return inputs.sum() * 0.0, 0
    logits = forward(inputs[keep])
    loss = multinomial_nll(logits, targets[keep])
    extra = model.extra_loss()
    if extra is not None:
        loss = loss + extra
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
