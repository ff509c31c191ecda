"""Training with side information (`trained_by = "side_gradient"`): the hybrid cold-start autoencoders.

DropoutNet-style (Volkovs et al. 2017): each mini-batch of users is corrupted so that the network learns to
predict a user's ratings from whatever a new user or a new movie would bring:
  - a share of rows lose every rating (the profile alone must predict: a brand-new user),
  - a share keep only 1..max_revealed random ratings (a new user's first ratings),
  - the rest keep their ratings under input dropout (known users),
  - a share of rows lose their profile (callers who send ratings only),
  - a share of movies lose their free vectors for the step (the metadata alone must place them: new movies).
The target is always the user's full row: masked MSE for the rating model, the multinomial likelihood of
the movies rated at least `like_threshold` (else of every rated movie) for the ranking model.

Model selection uses cold validation users: 10% of the users with at least `2 * max_revealed` training
ratings are left out of training entirely; each epoch scores them from their profile with 0, 3 and 10 of
their first ratings revealed (earliest by timestamp when known, else seeded random ones) and keeps the
epoch with the best mean over the three (RMSE for the rating model, NDCG@10 on ratings >= 4 for the ranking
model). The validation users are few (about 75 on ml-100k), so the curve is noisy: the preset's patience of
30 epochs keeps early stopping from ending a fit before the network has learned to use the revealed ratings
(with 10, fits often stopped near epoch 10 with a model that ignored them). The test file is never seen.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from movierec.core.artifact import RatingScale
from movierec.core.device import dense_batch
from movierec.core.models import Recommender
from movierec.core.models.hybrid import HybridAE
from movierec.core.sparse import Csr
from movierec.trainer.config import TrainConfig
from movierec.trainer.fit.base import FitOptions, FitRun, Trainer
from movierec.trainer.fit.common import RELEVANT_MIN_RATING, VALID_K, EpochStats, FitResult
from movierec.trainer.losses import masked_mse, multinomial_nll
from movierec.trainer.metrics import ranking_metrics

VALID_REVEALS: tuple[int, ...] = (0, 3, 10)  # ratings revealed to the model for each cold validation user
VALID_USER_FRACTION = 0.1
VALID_BATCH = 1024  # cold validation users scored at a time


@dataclass(frozen=True)
class SideData:
    """What the side models see besides ratings: feature rows aligned with the rating matrix's users and
    movies (`FeatureSchema.encode_users` / `encode_items`)."""

    user_features: npt.NDArray[np.float32]  # [n_users, n_user_features]
    item_features: npt.NDArray[np.float32]  # [n_items, n_item_features]
    # Optional: the same sparsity pattern as the training matrix with each rating's place in its user's
    # history (1 = earliest). With it, "first ratings" are the earliest ones, as for a real new user;
    # without it (no timestamps), random ones.
    order: Csr | None = None
    # the user-feature columns of the demographic segments (`segment:F|25-34`, ...), for the segment prior
    segment_columns: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True)
class ColdSplit:
    """Cold validation users: their revealed ratings (inputs) and the rest (targets), per reveal count."""

    users: npt.NDArray[np.int64]
    inputs: dict[int, Csr]
    targets: dict[int, Csr]


def reveal_split(
    matrix: Csr, users: npt.NDArray[np.int64], reveal: int, seed: int, order: Csr | None = None
) -> tuple[Csr, Csr]:
    """For each of `users` (rows of `matrix`): `reveal` ratings as inputs (the earliest by `order` when
    given, else random ones), the rest as targets (rows aligned with `users`)."""
    sub = matrix.rows(users)
    rows, cols, vals = sub.to_coo()
    rng = np.random.default_rng(seed)
    keys = order.rows(users).values.astype(np.float64) if order is not None else rng.random(rows.size)
    sorted_pos = np.lexsort((keys, rows))
    rank = np.empty(rows.size, dtype=np.int64)
    starts = np.repeat(sub.indptr[:-1], sub.row_lengths())
    rank[sorted_pos] = np.arange(rows.size) - starts
    shown = rank < reveal
    n = users.size
    return (
        Csr.from_coo(rows[shown], cols[shown], vals[shown], n, matrix.n_cols),
        Csr.from_coo(rows[~shown], cols[~shown], vals[~shown], n, matrix.n_cols),
    )


def cold_split(matrix: Csr, min_ratings: int, seed: int, order: Csr | None = None, max_users: int = 0) -> ColdSplit:
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(matrix.row_lengths() >= min_ratings)
    n = int(round(VALID_USER_FRACTION * eligible.size))
    if max_users > 0:  # large data: a cap (the training settings' valid_users)
        n = min(n, max_users)
    users = np.sort(rng.choice(eligible, size=n, replace=False)) if n else np.zeros(0, np.int64)
    inputs, targets = {}, {}
    for reveal in VALID_REVEALS:
        inputs[reveal], targets[reveal] = reveal_split(matrix, users, reveal, seed + reveal, order)
    return ColdSplit(users, inputs, targets)


def _corrupt(
    x: torch.Tensor, users: torch.Tensor, model: HybridAE, generator: torch.Generator, when: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The DropoutNet input corruption of one batch (see the module docstring); vectorized over rows.

    `when`: each rating's place in its user's history (1 = earliest, 0 = unrated), or None (random)."""
    s = model.settings
    b, n = x.shape
    rated = x != 0
    mode = torch.rand(b, generator=generator)
    keys = torch.rand(b, n, generator=generator).to(x.device)
    # few-ratings rows: keep the user's first `reveal` ratings (by `when`, else at random)
    reveal = torch.randint(1, s.max_revealed + 1, (b,), generator=generator).to(x.device)
    if when is not None:
        few = rated & (when <= reveal[:, None])
    else:
        order_keys = torch.where(rated, keys, torch.full_like(keys, 2.0))
        ranks = order_keys.argsort(dim=1).argsort(dim=1)
        few = rated & (ranks < reveal[:, None])
    full = rated & (keys >= s.input_dropout)
    none = mode < s.profile_only
    is_few = (mode >= s.profile_only) & (mode < s.profile_only + s.few_ratings)
    keep = torch.where(is_few.to(x.device)[:, None], few, full)
    keep &= ~none.to(x.device)[:, None]
    drop_profile = (torch.rand(b, generator=generator) < s.profile_drop).to(x.device)
    return x * keep, users * (~drop_profile)[:, None]


class SideTrainer(Trainer):
    """Fits a `HybridAE` (rating or ranking) with user and movie features; see the module docstring."""

    def fit(self, run: FitRun, options: FitOptions) -> FitResult:
        model = run.model
        if not isinstance(model, HybridAE):
            raise TypeError(f"{type(model).__name__} is not a side-information model")
        if run.side is None:
            raise ValueError(f"model kind {run.model_config.kind!r} needs user and movie features (side data)")
        cfg, device, generator = run.train_config, run.device, run.generator
        cfg = cfg.for_shape(run.train.n_rows, run.train.n_cols)  # its `large` settings on large data
        s = model.settings
        side = run.side
        with torch.no_grad():
            model.item_features.copy_(torch.from_numpy(side.item_features))
            if side.segment_columns is not None and model.settings.n_segments:
                model.segment_columns.copy_(torch.from_numpy(side.segment_columns))
        user_feats = torch.from_numpy(side.user_features).to(device)
        train = run.train
        split = cold_split(train, 2 * s.max_revealed, cfg.seed, side.order, cfg.settings.valid_users)
        rows_all = np.setdiff1d(np.flatnonzero(train.row_lengths() > 0), split.users)
        scale = RatingScale.infer(train.values) if train.nnz else None
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        l2 = cfg.settings.l2
        ranking = model.objective == "ranking"
        result = FitResult(model=model, device=str(device))
        best, best_state, since_best = math.inf, None, 0
        start_all = time.perf_counter()
        bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {run.model_config.kind}", unit="epoch",
                   disable=not options.progress, file=sys.stderr)  # fmt: skip
        for epoch in bar:
            t0 = time.perf_counter()
            model.train()
            order = rows_all[torch.randperm(rows_all.size, generator=generator).numpy()]
            loss_sum, count = 0.0, 0
            for start in range(0, order.size, cfg.batch_size):
                if cfg.settings.max_seconds and start > 0 and time.perf_counter() - start_all > cfg.settings.max_seconds:
                    break  # out of time mid-epoch: validate what was trained, then stop
                rows = order[start : start + cfg.batch_size]
                x = dense_batch(train, rows, device)
                when = dense_batch(side.order, rows, device) if side.order is not None else None
                x_in, u_in = _corrupt(x, user_feats[torch.from_numpy(rows).to(device)], model, generator, when)
                keep = (torch.rand(model.movie_keep.shape[0], generator=generator) >= s.movie_drop).float()
                model.movie_keep.copy_(keep.to(device))
                optimizer.zero_grad(set_to_none=True)
                outs = model.member_scores(x_in, u_in, x.new_zeros(0, s.n_item_features))
                if ranking:  # each member fits on its own; the model averages them
                    target = x >= s.like_threshold if s.like_threshold > 0 else x
                    liked_rows = (target != 0).any(dim=1)
                    y = target[liked_rows].float()
                    loss = torch.stack([multinomial_nll(o[liked_rows], y) for o in outs]).mean()
                    n = int(liked_rows.sum())
                else:
                    fits = [masked_mse(o, x) for o in outs]
                    loss, n = torch.stack([f[0] for f in fits]).mean(), fits[0][1]
                if n == 0:
                    continue
                total = loss + (0.5 * l2 * sum((p * p).sum() for p in model.parameters() if p.dim() >= 2) if l2 else 0.0)
                total.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * n
                count += n
            model.movie_keep.fill_(1.0)
            train_loss = loss_sum / max(count, 1)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training diverged at epoch {epoch} (train loss {train_loss}); lower the lr")
            metric = _validate(model, split, user_feats, device, scale)
            stats = EpochStats(
                epoch,
                float("nan") if ranking else math.sqrt(train_loss),
                float("nan") if ranking else metric,
                time.perf_counter() - t0,
                train_loss,
                metric if ranking else float("nan"),
            )
            result.history.append(stats)
            if options.on_epoch is not None:
                options.on_epoch(stats)
            bar.set_postfix(train_loss=f"{train_loss:.4f}", cold_valid=f"{metric:.4f}")
            if split.users.size == 0:
                continue
            score = -metric if ranking else metric
            if score < best - 1e-5:
                best, since_best, result.best_epoch = score, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
                if cfg.patience and since_best >= cfg.patience:
                    result.stopped_early = True
                    break
            if cfg.settings.max_seconds and time.perf_counter() - start_all > cfg.settings.max_seconds:
                result.stopped_early = result.time_budget_hit = True
                break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
            if ranking:
                result.best_valid_ndcg = -best
            else:
                result.best_valid_rmse = best
        model.eval()
        if ranking and model.settings.n_segments:
            weight, score = _fit_segment_prior(model, train, rows_all, user_feats, split, device, scale)
            result.chosen["prior_weight"] = weight
            if weight > 0:
                result.best_valid_ndcg = score
        return result

    def finalize(self, model: Recommender, full: Csr, train_config: TrainConfig) -> None:
        """Nothing to do: the hybrid models hold no per-user state."""


PRIOR_SMOOTHING = 100.0  # pseudo-ratings per segment drawn from the overall popularity
PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)


@torch.no_grad()
def _fit_segment_prior(
    model: HybridAE,
    train: Csr,
    rows: npt.NDArray[np.int64],
    user_feats: torch.Tensor,
    split: ColdSplit,
    device: torch.device,
    scale: RatingScale | None,
) -> tuple[float, float]:
    """Fill the ranking model's segment prior from the training rows `rows` (the cold validation users
    excluded) and pick its weight on the cold validation users; returns (weight, validation NDCG@10).

    The prior estimates what the networks model: with `like_threshold` set, P(liked movie | segment) from the
    ratings at or above it, else P(rated movie | segment). Counting every rating instead (how often a segment
    watched a movie rather than how often it liked it) did worse as the prior alone on the cold validation
    users (README, "Cold start")."""
    s = model.settings
    columns = model.segment_columns
    sub = train.rows(rows)
    r, c, v = sub.to_coo()
    if s.like_threshold > 0:  # the networks learn the liked movies: the prior counts those too
        liked = v >= s.like_threshold
        r, c = r[liked], c[liked]
    seg_onehot = user_feats[torch.from_numpy(rows).to(device)][:, columns]
    known = seg_onehot.sum(dim=1) > 0
    seg = torch.where(known, seg_onehot.argmax(dim=1), torch.full_like(known, s.n_segments, dtype=torch.int64))
    n = train.n_cols
    counts = torch.zeros(s.n_segments + 1, n, device=device)
    counts.index_put_((seg[torch.from_numpy(r).to(device)], torch.from_numpy(c).to(device)),
                      torch.ones(r.size, device=device), accumulate=True)  # fmt: skip
    overall = counts.sum(dim=0) + 1.0
    share = overall / overall.sum()
    smoothed = counts[: s.n_segments] + PRIOR_SMOOTHING * share
    prior = torch.cat([torch.log(smoothed / smoothed.sum(dim=1, keepdim=True)), torch.log(share)[None]])
    model.segment_prior.copy_(prior)
    best_weight, best_score = 0.0, -math.inf
    for weight in PRIOR_WEIGHTS:
        model.prior_weight.fill_(weight)
        score = _validate(model, split, user_feats, device, scale)
        if score > best_score + 1e-5:
            best_weight, best_score = weight, score
    model.prior_weight.fill_(best_weight)
    model.eval()
    return best_weight, best_score


@torch.no_grad()
def _validate(
    model: HybridAE,
    split: ColdSplit,
    user_feats: torch.Tensor,
    device: torch.device,
    scale: RatingScale | None,
) -> float:
    """Mean over VALID_REVEALS of the cold validation users' RMSE (rating) or NDCG@10 (ranking)."""
    if split.users.size == 0:
        return float("nan")
    model.eval()
    u = user_feats[torch.from_numpy(split.users).to(device)]
    empty = u.new_zeros(0, model.settings.n_item_features)
    values = []
    for reveal in VALID_REVEALS:
        inputs, targets = split.inputs[reveal], split.targets[reveal]
        ranked, preds = [], []
        for s in range(0, inputs.n_rows, VALID_BATCH):  # row by row in batches: no users x movies matrix
            rows = np.arange(s, min(s + VALID_BATCH, inputs.n_rows))
            x = dense_batch(inputs, rows, device)
            out = model.scores_side(x, u[s : s + rows.size], empty).float()
            if model.objective == "ranking":
                out.masked_fill_(x != 0, float("-inf"))
                ranked.append(torch.topk(out, min(VALID_K, out.shape[1]), dim=1).indices.cpu().numpy())
            else:
                r, c, _ = targets.rows(rows).to_coo()
                preds.append(out[torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)].cpu().numpy())
        if model.objective == "ranking":
            liked = targets.values >= RELEVANT_MIN_RATING
            r, c, _ = targets.to_coo()
            relevant = Csr.from_coo(r[liked], c[liked], np.ones(int(liked.sum())), targets.n_rows, targets.n_cols)
            values.append(ranking_metrics(np.concatenate(ranked), relevant, VALID_K)[f"ndcg@{VALID_K}"])
        else:
            pred = np.concatenate(preds)
            if scale is not None:
                pred = scale.clip(pred)
            values.append(float(np.sqrt(np.mean((pred - targets.values) ** 2))))
    model.train()
    return float(np.mean(values))
