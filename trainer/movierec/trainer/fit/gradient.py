"""Training by gradient steps: vectorized mini-batches of rows, validation-based early stopping, checkpoints,
data parallelism (DDP), and the full-batch refit the ensemble uses (refittable families)."""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from movierec.core.artifact import RatingScale
from movierec.core.device import dense_batch, dense_rows
from movierec.core.models import Recommender
from movierec.core.sparse import Csr
from movierec.trainer import distributed
from movierec.trainer.checkpoint import CheckpointSpec, load_checkpoint, run_key, save_checkpoint
from movierec.trainer.config import TrainConfig
from movierec.trainer.fit.base import FitOptions, FitRun, Trainer
from movierec.trainer.fit.common import (
    RELEVANT_MIN_RATING,
    EpochStats,
    FitResult,
    pooled_rmse,
    predict_pairs,
    validation_ndcg,
)
from movierec.trainer.losses import MSE_LOSSES, get_loss, masked_mse


class GradientTrainer(Trainer):
    """Rating models (objective "rating") keep the epoch with the lowest validation RMSE, ranking models the
    epoch with the highest validation NDCG@10. Item-based models (orientation "item") train on the transposed
    matrix (rows = movies).

    Data parallel: when a `torch.distributed` process group is up, every rank shuffles the rows with the same
    seeded permutation and takes a strided share of each global mini-batch of `batch_size` rows; each rank's
    loss is weighted by its share of the batch's rated entries, so the DDP-averaged gradient is the gradient
    of the whole batch, as on one process. Validation sums (squared errors and counts, or NDCG sums and user
    counts) are all-reduced, so every rank takes the same early-stopping decisions. A checkpoint is written
    every epoch (rank 0, atomically) and, with `resume`, the fit continues from it.
    """

    def fit(self, run: FitRun, options: FitOptions) -> FitResult:
        model, train, device, generator = run.model, run.train, run.device, run.generator
        train_config = run.train_config.for_shape(train.n_rows, train.n_cols)  # its `large` settings on large data
        valid = run.valid
        checkpoint, progress = options.checkpoint, options.progress
        objective = model.objective
        use_valid = valid is not None and valid.nnz > 0
        rank, world = distributed.rank(), distributed.world_size()
        net = distributed.wrap(model, device)  # DDP when a process group is up: broadcasts rank 0's weights
        if rank > 0:
            torch.manual_seed(train_config.seed + 7919 * rank)  # dropout differs by rank; shuffling does not
        item_based = model.orientation == "item"
        fit_rows = train.transpose() if item_based else train
        valid_rows = valid.transpose() if (item_based and valid is not None) else valid
        loss_fn = get_loss(train_config.loss)
        mse_loss = train_config.loss in MSE_LOSSES
        optimizer = _optimizer(model, train_config)
        l2 = train_config.settings.l2
        weights = [p for p in model.parameters() if p.dim() >= 2]
        rows_all = np.flatnonzero(fit_rows.row_lengths() > 0)
        # validation clips as served
        rating_scale = RatingScale.infer(train.values) if use_valid and train.nnz else None
        result = FitResult(model=model, device=str(device), world_size=world)
        best_state: dict[str, torch.Tensor] | None = None
        best = math.inf
        since_best = 0
        first_epoch = 1
        key = run_key(train, run.model_config, train_config) if checkpoint is not None else ""
        if checkpoint is not None and checkpoint.resume:
            state = load_checkpoint(checkpoint.path, key)
            if state is None:
                if progress:
                    print(f"no checkpoint at {checkpoint.path}: training from epoch 1", file=sys.stderr)
            else:
                best, since_best, best_state = _restore(
                    state, model, optimizer, generator, result, device, rank, world
                )
                first_epoch = result.resumed_from + 1
        start = time.perf_counter() - result.seconds
        bar = tqdm(
            range(first_epoch, train_config.epochs + 1),
            desc="train",
            unit="epoch",
            disable=not progress,
            file=sys.stderr,
            initial=first_epoch - 1,
            total=train_config.epochs,
        )
        for epoch in bar:
            if result.stopped_early:  # resumed from a run that had already stopped
                break
            t0 = time.perf_counter()
            net.train()  # the DDP wrapper and the model
            order = rows_all[torch.randperm(rows_all.size, generator=generator).numpy()]
            loss_sum, count = 0.0, 0
            budget = train_config.settings.max_seconds
            for b in range(0, order.size, train_config.batch_size):
                if budget and world == 1 and b > 0 and time.perf_counter() - start > budget:
                    break  # out of time mid-epoch (one process): validate what was trained, then stop
                batch = order[b : b + train_config.batch_size]
                rows = batch[rank::world]
                padded = rows.size == 0  # fewer rows than ranks: take part with a zero-weight row
                x = dense_batch(fit_rows, batch[:1] if padded else rows, device)
                optimizer.zero_grad(set_to_none=True)
                loss, n = loss_fn(net, model, x, x)
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
                    valid_rmse = _valid_rmse(
                        model, fit_rows, valid_rows, device, item_based, rank, world, rating_scale
                    )
            stats = EpochStats(
                epoch, train_rmse, valid_rmse, time.perf_counter() - t0, train_loss, valid_ndcg
            )
            result.history.append(stats)
            if options.on_epoch is not None:
                options.on_epoch(stats)
            bar.set_postfix(
                train_loss=f"{train_loss:.4f}", valid_rmse=f"{valid_rmse:.4f}", valid_ndcg=f"{valid_ndcg:.4f}"
            )
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch} (train loss {train_loss}); lower the lr"
                )
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
                _save(
                    checkpoint,
                    key,
                    epoch,
                    model,
                    optimizer,
                    generator,
                    result,
                    best,
                    since_best,
                    best_state,
                    rank,
                )
            over = bool(budget) and time.perf_counter() - start > budget
            if budget and world > 1:  # every rank takes the same decision
                over = distributed.all_reduce_sum([float(over)])[0] > 0
            if over and not result.stopped_early:
                result.stopped_early = result.time_budget_hit = True
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

    def finalize(self, model: Recommender, full: Csr, train_config: TrainConfig) -> None:
        model.prepare_serving(full)

    def refit(self, model: Recommender, full: Csr, train_config: TrainConfig) -> None:
        """Retrain a refittable model from a fresh initialization on every rating of `full` (users x items)
        for the number of full-batch steps the validation split chose (`steps_taken`), with the same
        optimizer, lr, L2 and seed.

        Only for full-batch training (`batch_size` >= number of rows, the I-AutoRec presets): then one step is
        one epoch and the chosen step count transfers to the larger matrix. Anything else: a no-op.
        """
        if not model.refittable:
            return
        train_config = train_config.for_shape(full.n_rows, full.n_cols)
        item_based = model.orientation == "item"
        steps = model.steps_taken()
        n_rows = full.n_cols if item_based else full.n_rows
        if steps <= 0 or train_config.batch_size < n_rows:
            return
        device = next(model.parameters()).device
        x = dense_rows(full.transpose() if item_based else full, device)
        x = x[(x != 0).any(dim=1)]
        torch.manual_seed(train_config.seed)
        model.reset_parameters()
        if train_config.optimizer == "rprop":
            opt: torch.optim.Optimizer = torch.optim.Rprop(model.parameters(), lr=train_config.lr)
        else:
            opt = torch.optim.Adam(
                model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
            )
        l2 = train_config.settings.l2
        weights = [p for p in model.parameters() if p.dim() >= 2]
        was_training = model.training
        model.train()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss, _n = masked_mse(model(x), x)
            if l2:
                loss = loss + 0.5 * l2 * sum(w.square().sum() for w in weights)
            loss.backward()
            opt.step()
        model.set_steps_taken(steps)
        model.train(was_training)


def _valid_rmse(
    model: Recommender,
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
        pred = (scale or RatingScale.infer(inputs.values)).clip(
            predict_pairs(model, inputs.rows(rows), sub, device, fn=fn)
        )
        sse = float(np.sum((pred.astype(np.float64) - sub.values) ** 2))
    sse, n = distributed.all_reduce_sum([sse, sub.nnz])
    return math.sqrt(sse / n) if n else float("nan")


def _valid_ndcg(
    model: Recommender, inputs: Csr, targets: Csr, device: torch.device, rank: int, world: int
) -> float:
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
    model: Recommender,
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
    save_checkpoint(
        spec.path,
        {
            "key": key,
            "epoch": epoch,
            "model": cpu,
            "model_steps": model.step_counter(),  # Mult-VAE's KL annealing counter (not in the state dict)
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "rng": rngs,
            "world_size": len(rngs),
            "best": best,
            "since_best": since_best,
            "best_epoch": result.best_epoch,
            "best_state": None
            if best_state is None
            else {k: v.detach().cpu() for k, v in best_state.items()},
            "stopped_early": result.stopped_early,
            "seconds": result.seconds,
            "history": [dataclasses.asdict(h) for h in result.history],
        },
    )


def _restore(
    state: dict[str, Any],
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    result: FitResult,
    device: torch.device,
    rank: int,
    world: int,
) -> tuple[float, int, dict[str, torch.Tensor] | None]:
    """Load a checkpoint into the model, optimizer, RNGs and `result`; returns (best, since_best, best_state)."""
    model.load_state_dict(state["model"])
    model.restore_step_counter(int(state["model_steps"]))  # buffers (I-AutoRec's steps) are in "model"
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


def _optimizer(model: Recommender, cfg: TrainConfig) -> torch.optim.Optimizer:
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
