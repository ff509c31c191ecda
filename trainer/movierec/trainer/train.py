"""The fit loop: vectorized mini-batches of users, validation-based early stopping, reproducible by seed.

Ratings stay sparse (`Csr`); each batch of users is densified on its own, so memory is O(batch x n_items).
The test file never enters here: model selection uses only the validation split carved from training data.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.device import dense_batch, resolve_device
from movierec.trainer.losses import get_loss
from movierec.trainer.model import build_model
from movierec.trainer.sparse import Csr


@dataclass
class EpochStats:
    epoch: int
    train_rmse: float
    valid_rmse: float
    seconds: float


@dataclass
class FitResult:
    model: nn.Module
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_rmse: float = float("nan")
    seconds: float = 0.0
    device: str = "cpu"
    stopped_early: bool = False


@torch.no_grad()
def predict_pairs(
    model: nn.Module, inputs: Csr, targets: Csr, device: torch.device, batch_size: int = 1024
) -> np.ndarray:
    """Model outputs at each (row, col) of `targets`, for inputs row by row; float32 [targets.nnz] in CSR order."""
    model.eval()
    out = np.empty(targets.nnz, dtype=np.float32)
    rows_with_targets = np.flatnonzero(targets.row_lengths() > 0)
    for start in range(0, rows_with_targets.size, batch_size):
        rows = rows_with_targets[start : start + batch_size]
        x = dense_batch(inputs, rows, device)
        scores = model.scores(x) if hasattr(model, "scores") else model(x)
        sub = targets.rows(rows)
        r, c, _ = sub.to_coo()
        vals = scores[torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)].float().cpu().numpy()
        # scatter back into targets' CSR order
        out[targets.positions(rows)] = vals
    return out


def pooled_rmse(model: nn.Module, inputs: Csr, targets: Csr, device: torch.device) -> float:
    if targets.nnz == 0:
        return float("nan")
    pred = np.clip(predict_pairs(model, inputs, targets, device), 1.0, 5.0)
    return float(np.sqrt(np.mean((pred - targets.values) ** 2)))


def fit(
    train: Csr,
    valid: Csr | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> FitResult:
    """Train a model on the user rows of `train`; `valid` (same shape) holds held-out ratings for early stopping."""
    train_config.validate()
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    generator = torch.Generator().manual_seed(train_config.seed)
    model = build_model(model_config).to(device)
    loss_fn = get_loss(train_config.loss)
    optimizer = _optimizer(model, train_config)
    users = np.flatnonzero(train.row_lengths() > 0)
    use_valid = valid is not None and valid.nnz > 0
    result = FitResult(model=model, device=str(device))
    best_state: dict[str, torch.Tensor] | None = None
    best = math.inf
    since_best = 0
    start = time.perf_counter()
    bar = tqdm(range(1, train_config.epochs + 1), desc="train", unit="epoch", disable=not progress, file=sys.stderr)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = users[torch.randperm(users.size, generator=generator).numpy()]
        sq_sum, count = 0.0, 0
        for b in range(0, order.size, train_config.batch_size):
            rows = order[b : b + train_config.batch_size]
            x = dense_batch(train, rows, device)
            optimizer.zero_grad(set_to_none=True)
            loss, n = loss_fn(model, x, x)
            if n == 0:
                continue
            loss.backward()
            optimizer.step()
            sq_sum += float(loss.detach()) * n
            count += n
        train_rmse = math.sqrt(sq_sum / max(count, 1))
        valid_rmse = pooled_rmse(model, train, valid, device) if use_valid and valid is not None else float("nan")
        stats = EpochStats(epoch, train_rmse, valid_rmse, time.perf_counter() - t0)
        result.history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        bar.set_postfix(train_rmse=f"{train_rmse:.4f}", valid_rmse=f"{valid_rmse:.4f}")
        if not math.isfinite(train_rmse):
            raise FloatingPointError(f"training diverged at epoch {epoch} (train RMSE {train_rmse}); lower the lr")
        if use_valid:
            if valid_rmse < best - 1e-5:
                best, since_best = valid_rmse, 0
                best_state = copy.deepcopy(model.state_dict())
                result.best_epoch = epoch
            else:
                since_best += 1
                if train_config.patience and since_best >= train_config.patience:
                    result.stopped_early = True
                    break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
        result.best_valid_rmse = best
    else:
        result.best_epoch = len(result.history)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose rmsprop, adam or sgd")
