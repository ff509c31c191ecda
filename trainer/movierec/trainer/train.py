"""The fit loop: vectorized mini-batches of users, validation-based early stopping, reproducible by seed.

Ratings stay sparse (`Csr`); each batch of users is densified on its own, so memory is O(batch x n_items).
The test file never enters here: model selection uses only the validation split carved from training data.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.device import dense_batch, resolve_device
from movierec.trainer.losses import MSE_LOSSES, get_loss
from movierec.trainer.metrics import ranking_metrics
from movierec.trainer.model import build_model
from movierec.trainer.sparse import Csr


@dataclass
class EpochStats:
    epoch: int
    train_rmse: float  # sqrt of the training loss for MSE losses, NaN otherwise
    valid_rmse: float  # pooled validation RMSE (rating models), NaN for ranking models
    seconds: float
    train_loss: float = float("nan")
    valid_ndcg: float = float("nan")  # validation NDCG@10 (ranking models)


@dataclass
class FitResult:
    model: nn.Module
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_rmse: float = float("nan")
    seconds: float = 0.0
    device: str = "cpu"
    stopped_early: bool = False
    best_valid_ndcg: float = float("nan")
    chosen: dict[str, Any] = field(default_factory=dict)  # hyperparameters picked on validation (closed form)


VALID_K = 10
RELEVANT_MIN_RATING = 4.0


@torch.no_grad()
def predict_pairs(
    model: nn.Module,
    inputs: Csr,
    targets: Csr,
    device: torch.device,
    batch_size: int = 1024,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Model outputs at each (row, col) of `targets`, for inputs row by row; float32 [targets.nnz] in CSR order.

    `fn` maps a dense batch of input rows to outputs (default: `model.scores`).
    """
    model.eval()
    if fn is None:
        fn = getattr(model, "scores", model)
    assert fn is not None
    out = np.empty(targets.nnz, dtype=np.float32)
    rows_with_targets = np.flatnonzero(targets.row_lengths() > 0)
    for start in range(0, rows_with_targets.size, batch_size):
        rows = rows_with_targets[start : start + batch_size]
        x = dense_batch(inputs, rows, device)
        scores = fn(x)
        sub = targets.rows(rows)
        r, c, _ = sub.to_coo()
        vals = scores[torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)].float().cpu().numpy()
        # scatter back into targets' CSR order
        out[targets.positions(rows)] = vals
    return out


def pooled_rmse(
    model: nn.Module,
    inputs: Csr,
    targets: Csr,
    device: torch.device,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    if targets.nnz == 0:
        return float("nan")
    pred = np.clip(predict_pairs(model, inputs, targets, device, fn=fn), 1.0, 5.0)
    return float(np.sqrt(np.mean((pred - targets.values) ** 2)))


@torch.no_grad()
def validation_ndcg(
    model: nn.Module, inputs: Csr, targets: Csr, device: torch.device, k: int = VALID_K, batch_size: int = 1024
) -> float:
    """NDCG@k of `model.scores` on held-out ratings >= 4, candidates = movies not in `inputs` (test protocol)."""
    model.eval()
    liked = targets.values >= RELEVANT_MIN_RATING
    r, c, _ = targets.to_coo()
    relevant = Csr.from_coo(r[liked], c[liked], np.ones(int(liked.sum())), targets.n_rows, targets.n_cols)
    users = np.flatnonzero(relevant.row_lengths() > 0)
    if users.size == 0:
        return float("nan")
    ranked = np.full((targets.n_rows, k), -1, dtype=np.int64)
    for start in range(0, users.size, batch_size):
        rows = users[start : start + batch_size]
        x = dense_batch(inputs, rows, device)
        scores = getattr(model, "scores", model)(x).float()
        scores.masked_fill_(x != 0, float("-inf"))
        ranked[rows] = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.cpu().numpy()
    return float(ranking_metrics(ranked, relevant, k)[f"ndcg@{k}"])


def fit(
    train: Csr,
    valid: Csr | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> FitResult:
    """Train a model on `train` (users x items); `valid` (same shape) holds held-out ratings for model selection.

    Rating models (objective "rating") pick the epoch with the lowest validation RMSE; ranking models the epoch
    with the highest validation NDCG@10; closed-form models pick `extra['l2_grid']` the same way. Item-based
    models (orientation "item") train on the transposed matrix (rows = movies).
    """
    train_config.validate()
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    generator = torch.Generator().manual_seed(train_config.seed)
    model = build_model(model_config).to(device)
    objective = getattr(model, "objective", "rating")
    use_valid = valid is not None and valid.nnz > 0
    if getattr(model, "closed_form", False):
        return _fit_closed_form(model, train, valid if use_valid else None, device)
    if getattr(model, "is_ensemble", False):
        return _fit_ensemble(model, train, valid if use_valid else None, train_config, progress=progress)
    item_based = getattr(model, "orientation", "user") == "item"
    fit_rows = train.transpose() if item_based else train
    valid_rows = valid.transpose() if (item_based and valid is not None) else valid
    loss_fn = get_loss(train_config.loss)
    mse_loss = train_config.loss in MSE_LOSSES
    optimizer = _optimizer(model, train_config)
    l2 = float(train_config.extra.get("l2", 0.0))
    weights = [p for p in model.parameters() if p.dim() >= 2]
    rows_all = np.flatnonzero(fit_rows.row_lengths() > 0)
    result = FitResult(model=model, device=str(device))
    best_state: dict[str, torch.Tensor] | None = None
    best = math.inf
    since_best = 0
    start = time.perf_counter()
    bar = tqdm(range(1, train_config.epochs + 1), desc="train", unit="epoch", disable=not progress, file=sys.stderr)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = rows_all[torch.randperm(rows_all.size, generator=generator).numpy()]
        loss_sum, count = 0.0, 0
        for b in range(0, order.size, train_config.batch_size):
            rows = order[b : b + train_config.batch_size]
            x = dense_batch(fit_rows, rows, device)
            optimizer.zero_grad(set_to_none=True)
            loss, n = loss_fn(model, x, x)
            if n == 0:
                continue
            data_loss = loss.detach()
            if l2:
                # explicit L2 on weight matrices (AutoRec's lambda/2 * ||W||^2, in mean-loss units)
                loss = loss + 0.5 * l2 * sum((w * w).sum() for w in weights)
            loss.backward()
            optimizer.step()
            loss_sum += float(data_loss) * n
            count += n
            if train_config.dense_refeed:
                # Dense re-feeding (Kuchaiev & Ginsburg 2017): f(x) is a dense, valid rating vector, so
                # f(f(x)) should reproduce it everywhere.
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    y = model(x).detach()
                refeed = model(y) - y
                (refeed * refeed).mean().backward()
                optimizer.step()
        train_loss = loss_sum / max(count, 1)
        train_rmse = math.sqrt(train_loss) if mse_loss and train_loss >= 0 else float("nan")
        valid_rmse, valid_ndcg = float("nan"), float("nan")
        if use_valid and valid_rows is not None and valid is not None:
            if objective == "ranking":
                valid_ndcg = validation_ndcg(model, train, valid, device)
            else:
                valid_rmse = pooled_rmse(model, fit_rows, valid_rows, device, fn=model if item_based else None)
        stats = EpochStats(epoch, train_rmse, valid_rmse, time.perf_counter() - t0, train_loss, valid_ndcg)
        result.history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        bar.set_postfix(train_loss=f"{train_loss:.4f}", valid_rmse=f"{valid_rmse:.4f}", valid_ndcg=f"{valid_ndcg:.4f}")
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch} (train loss {train_loss}); lower the lr")
        if use_valid:
            score = -valid_ndcg if objective == "ranking" else valid_rmse
            if score < best - 1e-5:
                best, since_best = score, 0
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
        if objective == "ranking":
            result.best_valid_ndcg = -best
        else:
            result.best_valid_rmse = best
    else:
        result.best_epoch = len(result.history)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _fit_closed_form(model: Any, train: Csr, valid: Csr | None, device: torch.device) -> FitResult:
    """Closed-form models: solve for every (l2, like_threshold) of extra['l2_grid'] x extra['like_threshold_grid']
    (each defaulting to the single configured value) and keep the best by validation NDCG@10."""
    start = time.perf_counter()
    result = FitResult(model=model, device=str(device))
    extra = model.config.extra
    l2_grid = [float(v) for v in extra.get("l2_grid", [model.l2])]
    has_threshold = hasattr(model, "like_threshold")
    thr_grid = [float(v) for v in extra.get("like_threshold_grid", [getattr(model, "like_threshold", 0.0)])]
    grid = [(l2, thr) for thr in thr_grid for l2 in l2_grid]
    best_i, best = 0, -math.inf
    for i, (l2, thr) in enumerate(grid, start=1):
        t0 = time.perf_counter()
        if has_threshold:
            model.like_threshold = thr
        model.solve(train, l2)
        ndcg = validation_ndcg(model, train, valid, device) if valid is not None else float("nan")
        result.history.append(EpochStats(i, float("nan"), float("nan"), time.perf_counter() - t0, valid_ndcg=ndcg))
        if valid is not None and ndcg > best:
            best, best_i = ndcg, i - 1
    l2, thr = grid[best_i]
    if has_threshold:
        model.like_threshold = thr
    model.solve(train, l2)
    model.eval()
    result.best_epoch = best_i + 1
    result.best_valid_ndcg = best if valid is not None else float("nan")
    result.chosen = {"l2": l2, **({"like_threshold": thr} if has_threshold else {})}
    result.seconds = time.perf_counter() - start
    return result


def _fit_ensemble(
    model: Any, train: Csr, valid: Csr | None, train_config: TrainConfig, *, progress: bool
) -> FitResult:
    """Fit each member on (train, valid), then the blend weights by least squares on the validation ratings."""
    start = time.perf_counter()
    result = FitResult(model=model, device=str(train_config.device))
    specs = model.config.extra["members"]
    preds: list[np.ndarray] = []
    for i, spec in enumerate(specs):
        tcfg = TrainConfig.from_dict({**spec.get("train", {}), "device": train_config.device})
        # the ensemble's own `epochs` caps its members' (so a quick run of the ensemble is quick)
        tcfg = dataclasses.replace(tcfg, epochs=min(tcfg.epochs, train_config.epochs))
        member_result = fit(train, valid, model.member_configs[i], tcfg, progress=progress)
        member = member_result.model
        model.members[i].load_state_dict(member.state_dict())
        result.history += member_result.history
        if valid is not None:
            fin = getattr(member, "finalize", None)
            if fin is not None:
                fin(train)  # codes from the fitting data only: validation ratings stay unseen
            preds.append(predict_pairs(member, train, valid, resolve_device(train_config.device)))
    if valid is not None and valid.nnz:
        design = np.column_stack([*preds, np.ones(valid.nnz)]).astype(np.float64)
        weights = np.linalg.lstsq(design, valid.values.astype(np.float64), rcond=None)[0]
        model.blend.copy_(torch.from_numpy(weights).float())
        blended = np.clip(design @ weights, 1.0, 5.0)
        result.best_valid_rmse = float(np.sqrt(np.mean((blended - valid.values) ** 2)))
        result.chosen = {"weights": [float(w) for w in weights]}
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
    if cfg.optimizer == "rprop":  # full-batch training, as in the AutoRec paper
        return torch.optim.Rprop(params, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose rmsprop, adam, adamw, rprop or sgd")
