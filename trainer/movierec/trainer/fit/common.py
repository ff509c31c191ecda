"""What every trainer shares: the fit result, per-epoch statistics, and validation scoring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from movierec.core.artifact import RatingScale
from movierec.core.device import dense_batch
from movierec.core.models import Recommender
from movierec.core.sparse import Csr
from movierec.trainer.metrics import ranking_metrics


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
    model: Recommender
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_rmse: float = float("nan")
    seconds: float = 0.0
    device: str = "cpu"
    stopped_early: bool = False
    best_valid_ndcg: float = float("nan")
    chosen: dict[str, Any] = field(default_factory=dict)  # hyperparameters picked on validation (closed form)
    resumed_from: int = 0  # the checkpointed epoch this run continued from (0: started from scratch)
    world_size: int = 1  # data-parallel ranks that trained it
    time_budget_hit: bool = False  # stopped by the training settings' max_seconds
    parts: dict[str, float] = field(default_factory=dict)  # seconds of each part (an ensemble's members)


VALID_K = 10
RELEVANT_MIN_RATING = 4.0


@torch.no_grad()
def predict_pairs(
    model: Recommender,
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
        fn = model.scores
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
    model: Recommender,
    inputs: Csr,
    targets: Csr,
    device: torch.device,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    scale: RatingScale | None = None,
) -> float:
    """RMSE of predictions clipped into `scale` (default: the scale of the `inputs` ratings), as served."""
    if targets.nnz == 0:
        return float("nan")
    scale = scale or RatingScale.infer(inputs.values)
    pred = scale.clip(predict_pairs(model, inputs, targets, device, fn=fn))
    return float(np.sqrt(np.mean((pred - targets.values) ** 2)))


@torch.no_grad()
def validation_ndcg(
    model: Recommender,
    inputs: Csr,
    targets: Csr,
    device: torch.device,
    k: int = VALID_K,
    batch_size: int = 1024,
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
        scores = model.scores(x).float()
        scores.masked_fill_(x != 0, float("-inf"))
        ranked[rows] = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.cpu().numpy()
    return float(ranking_metrics(ranked, relevant, k)[f"ndcg@{k}"])
