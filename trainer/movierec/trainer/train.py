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

from movierec.core.artifact import RatingScale
from movierec.core.device import dense_batch, resolve_device
from movierec.core.model import build_model
from movierec.core.sparse import Csr
from movierec.trainer import distributed
from movierec.trainer.checkpoint import CheckpointSpec, load_checkpoint, run_key, save_checkpoint
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.losses import MSE_LOSSES, get_loss
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
    model: nn.Module
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
    checkpoint: CheckpointSpec | None = None,
) -> FitResult:
    """Train a model on `train` (users x items); `valid` (same shape) holds held-out ratings for model selection.

    Rating models (objective "rating") pick the epoch with the lowest validation RMSE; ranking models the epoch
    with the highest validation NDCG@10; closed-form models pick `extra['l2_grid']` the same way. Item-based
    models (orientation "item") train on the transposed matrix (rows = movies).

    Data parallel: when a `torch.distributed` process group is up, every rank shuffles the rows with the same
    seeded permutation and takes a strided share of each global mini-batch of `batch_size` rows; each rank's
    loss is weighted by its share of the batch's rated entries, so the DDP-averaged gradient is the gradient
    of the whole batch, as on one process. Validation sums (squared errors and counts, or NDCG sums and user
    counts) are all-reduced, so every rank takes the same early-stopping decisions. `checkpoint`: write one
    every epoch (rank 0, atomically) and, with `resume`, continue from it.
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
        return _fit_ensemble(
            model, train, valid if use_valid else None, train_config, progress=progress, checkpoint=checkpoint
        )
    rank, world = distributed.rank(), distributed.world_size()
    net = distributed.wrap(model, device)  # DDP when a process group is up: broadcasts rank 0's weights
    if rank > 0:
        torch.manual_seed(train_config.seed + 7919 * rank)  # dropout differs by rank; shuffling does not
    item_based = getattr(model, "orientation", "user") == "item"
    fit_rows = train.transpose() if item_based else train
    valid_rows = valid.transpose() if (item_based and valid is not None) else valid
    loss_fn = get_loss(train_config.loss)
    mse_loss = train_config.loss in MSE_LOSSES
    optimizer = _optimizer(model, train_config)
    l2 = float(train_config.extra.get("l2", 0.0))
    weights = [p for p in model.parameters() if p.dim() >= 2]
    rows_all = np.flatnonzero(fit_rows.row_lengths() > 0)
    rating_scale = RatingScale.infer(train.values) if use_valid and train.nnz else None  # validation clips as served
    result = FitResult(model=model, device=str(device), world_size=world)
    best_state: dict[str, torch.Tensor] | None = None
    best = math.inf
    since_best = 0
    first_epoch = 1
    key = run_key(train, model_config, train_config) if checkpoint is not None else ""
    if checkpoint is not None and checkpoint.resume:
        state = load_checkpoint(checkpoint.path, key)
        if state is None:
            if progress:
                print(f"no checkpoint at {checkpoint.path}: training from epoch 1", file=sys.stderr)
        else:
            best, since_best, best_state = _restore(state, model, optimizer, generator, result, device, rank, world)
            first_epoch = result.resumed_from + 1
    start = time.perf_counter() - result.seconds
    bar = tqdm(
        range(first_epoch, train_config.epochs + 1), desc="train", unit="epoch", disable=not progress,
        file=sys.stderr, initial=first_epoch - 1, total=train_config.epochs,
    )
    for epoch in bar:
        if result.stopped_early:  # resumed from a run that had already stopped
            break
        t0 = time.perf_counter()
        net.train()  # the DDP wrapper and the model
        order = rows_all[torch.randperm(rows_all.size, generator=generator).numpy()]
        loss_sum, count = 0.0, 0
        for b in range(0, order.size, train_config.batch_size):
            batch = order[b : b + train_config.batch_size]
            rows = batch[rank::world]
            padded = rows.size == 0  # fewer rows than ranks: take part with a zero-weight row
            x = dense_batch(fit_rows, batch[:1] if padded else rows, device)
            optimizer.zero_grad(set_to_none=True)
            loss, n = loss_fn(net, x, x)
            n = 0 if padded else n
            n_rows = 0 if padded else int(rows.size)
            scale, row_scale = 1.0, 1.0
            if world > 1:
                n_total, rows_total = distributed.all_reduce_sum([n, n_rows])
                if n_total == 0:  # the same on every rank: all skip the step together
                    continue
                scale, row_scale = n * world / n_total, n_rows * world / rows_total
            elif n == 0:
                continue
            data_loss = loss.detach()
            if scale != 1.0:
                loss = loss * scale
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
                refeed = net(y) - y
                refeed_loss = (refeed * refeed).mean()
                (refeed_loss * row_scale if row_scale != 1.0 else refeed_loss).backward()
                optimizer.step()
        loss_sum, counted = distributed.all_reduce_sum([loss_sum, count])
        train_loss = loss_sum / max(counted, 1.0)
        train_rmse = math.sqrt(train_loss) if mse_loss and train_loss >= 0 else float("nan")
        valid_rmse, valid_ndcg = float("nan"), float("nan")
        if use_valid and valid_rows is not None and valid is not None:
            if objective == "ranking":
                valid_ndcg = _valid_ndcg(model, train, valid, device, rank, world)
            else:
                valid_rmse = _valid_rmse(model, fit_rows, valid_rows, device, item_based, rank, world, rating_scale)
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
        if checkpoint is not None:
            result.seconds = time.perf_counter() - start
            _save(checkpoint, key, epoch, model, optimizer, generator, result, best, since_best, best_state, rank)
        if result.stopped_early:
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


def _valid_rmse(
    model: nn.Module,
    inputs: Csr,
    targets: Csr,
    device: torch.device,
    item_based: bool,
    rank: int,
    world: int,
    scale: RatingScale | None,
) -> float:
    """Pooled validation RMSE; with several ranks each scores every `world`-th row and the sums are all-reduced."""
    fn = model if item_based else None
    if world == 1:
        return pooled_rmse(model, inputs, targets, device, fn=fn, scale=scale)
    rows = np.arange(rank, targets.n_rows, world)
    sub = targets.rows(rows)
    sse = 0.0
    if sub.nnz:
        pred = (scale or RatingScale.infer(inputs.values)).clip(predict_pairs(model, inputs.rows(rows), sub, device, fn=fn))
        sse = float(np.sum((pred.astype(np.float64) - sub.values) ** 2))
    sse, n = distributed.all_reduce_sum([sse, sub.nnz])
    return math.sqrt(sse / n) if n else float("nan")


def _valid_ndcg(model: nn.Module, inputs: Csr, targets: Csr, device: torch.device, rank: int, world: int) -> float:
    """Validation NDCG@10 over users; with several ranks a mean of per-rank sums, all-reduced."""
    if world == 1:
        return validation_ndcg(model, inputs, targets, device)
    rows = np.arange(rank, targets.n_rows, world)
    sub = targets.rows(rows)
    liked_rows, _, _ = sub.to_coo()
    users = int(np.unique(liked_rows[sub.values >= RELEVANT_MIN_RATING]).size)
    total = validation_ndcg(model, inputs.rows(rows), sub, device) * users if users else 0.0
    total, users_all = distributed.all_reduce_sum([total, users])
    return total / users_all if users_all else float("nan")


def _save(
    spec: CheckpointSpec,
    key: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    result: FitResult,
    best: float,
    since_best: int,
    best_state: dict[str, torch.Tensor] | None,
    rank: int,
) -> None:
    """Checkpoint after `epoch` (every rank sends its RNG state; rank 0 writes)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and result.device.startswith("cuda"):
        rng["cuda"] = torch.cuda.get_rng_state()
    rngs = distributed.all_gather_object(rng)
    if rank != 0:
        return
    cpu = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(spec.path, {
        "key": key,
        "epoch": epoch,
        "model": cpu,
        "model_steps": int(getattr(model, "steps", 0)),  # Mult-VAE's KL annealing counter
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "rng": rngs,
        "world_size": len(rngs),
        "best": best,
        "since_best": since_best,
        "best_epoch": result.best_epoch,
        "best_state": None if best_state is None else {k: v.detach().cpu() for k, v in best_state.items()},
        "stopped_early": result.stopped_early,
        "seconds": result.seconds,
        "history": [dataclasses.asdict(h) for h in result.history],
    })


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    result: FitResult,
    device: torch.device,
    rank: int,
    world: int,
) -> tuple[float, int, dict[str, torch.Tensor] | None]:
    """Load a checkpoint into the model, optimizer, RNGs and `result`; returns (best, since_best, best_state)."""
    model.load_state_dict(state["model"])
    if isinstance(getattr(model, "steps", None), int):  # a plain counter (Mult-VAE); buffers are in "model"
        setattr(model, "steps", int(state["model_steps"]))  # noqa: B010
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    rngs = state["rng"]
    if len(rngs) == world:
        torch.set_rng_state(rngs[rank]["torch"])
        if "cuda" in rngs[rank] and device.type == "cuda":
            torch.cuda.set_rng_state(rngs[rank]["cuda"])
    else:  # another number of ranks: dropout streams cannot continue, reseed them per rank and epoch
        torch.manual_seed(int(state["epoch"]) * 1_000_003 + rank)
    result.history = [EpochStats(**h) for h in state["history"]]
    result.best_epoch = int(state["best_epoch"])
    result.stopped_early = bool(state["stopped_early"])
    result.seconds = float(state["seconds"])
    result.resumed_from = int(state["epoch"])
    best_state = state["best_state"]
    if best_state is not None:
        best_state = {k: v.to(device) for k, v in best_state.items()}
    return float(state["best"]), int(state["since_best"]), best_state


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
    model: Any,
    train: Csr,
    valid: Csr | None,
    train_config: TrainConfig,
    *,
    progress: bool,
    checkpoint: CheckpointSpec | None = None,
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
        member_ckpt = checkpoint.member(f"member{i}") if checkpoint is not None else None
        member_result = fit(train, valid, model.member_configs[i], tcfg, progress=progress, checkpoint=member_ckpt)
        result.resumed_from = max(result.resumed_from, member_result.resumed_from)
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
        blended = RatingScale.infer(train.values).clip(design @ weights)  # as the scorer clips the blend
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
