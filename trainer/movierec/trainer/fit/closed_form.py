"""Closed-form training: EASE, the kNN-baseline and most-popular are solved from the ratings, with their
hyperparameters (l2, EASE's like threshold) picked on the validation split."""

from __future__ import annotations

import math
import time
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from movierec.core.models import EASE, KNNBaseline, Popularity, Recommender
from movierec.core.sparse import Csr
from movierec.trainer.config import TrainConfig
from movierec.trainer.fit.base import FitOptions, FitRun, Trainer
from movierec.trainer.fit.common import EpochStats, FitResult, pooled_rmse, validation_ndcg

Settings = dict[str, float]


class Solver(ABC):
    """How one closed-form family is solved: its candidate settings, and the solve itself."""

    def clear(self) -> None:  # noqa: B027 (nothing cached by default)
        """Drop what was cached across the solves of one grid (called when the grid is done)."""

    def grid(self, model: Recommender) -> list[Settings]:
        """Settings to try, in order (the first best one wins); [{}] when there is nothing to choose."""
        return [{}]

    def apply(self, model: Recommender, settings: Settings) -> None:  # noqa: B027 (nothing to set by default)
        """Set the model's hyperparameters to `settings` (kept for scoring and for `finalize`)."""

    @abstractmethod
    def solve(self, model: Recommender, train: Csr) -> None:
        """Fill the model's buffers from the rows of `train` (users x items) with its current settings."""


def _l2_grid(model: EASE | KNNBaseline) -> list[float]:
    return list(model.settings.l2_grid) or [model.l2]


class EaseSolver(Solver):
    """B = argmin ||Y - X B||^2 + l2 ||B||^2, diag(B) = 0 (see `movierec.core.models.ease.EASE`)."""

    def grid(self, model: Recommender) -> list[Settings]:
        assert isinstance(model, EASE)
        thresholds = list(model.settings.like_threshold_grid) or [model.like_threshold]
        return [{"l2": l2, "like_threshold": thr} for thr in thresholds for l2 in _l2_grid(model)]

    def apply(self, model: Recommender, settings: Settings) -> None:
        assert isinstance(model, EASE)
        model.l2 = float(settings["l2"])
        model.like_threshold = float(settings["like_threshold"])

    def __init__(self) -> None:
        self._source: weakref.ref[Csr] | None = None
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def _cached(self, source: Csr, key: tuple[Any, ...], make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self._source is None or self._source() is not source:
            self.clear()
            self._source = weakref.ref(source)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def clear(self) -> None:
        self._source, self._cache = None, {}

    def solve(self, model: Recommender, train: Csr) -> None:
        assert isinstance(model, EASE)
        dev = model.weights.device
        source = train
        n = model.config.n_items
        cols = np.arange(n)
        if 0 < model.max_items < n:  # pruned: the max_items most rated movies (ties: the lower index)
            counts = np.bincount(train.indices, minlength=n).astype(np.float64)
            cols = np.sort(np.argsort(-counts, kind="stable")[: model.max_items])
            model.set_kept(torch.from_numpy(cols), torch.from_numpy(counts / (counts.max() + 1.0)))
            train = select_columns(train, cols)
        k = cols.size
        liked = train.values >= model.like_threshold
        if model.target == "graded":  # 1 at the threshold, one more per star above it
            y_values = np.where(liked, train.values - model.like_threshold + 1, 0.0)
        else:
            y_values = liked.astype(np.float64)
        ones = np.ones(train.nnz)
        # X'X (and X'Y per target and threshold) do not depend on l2: computed once per matrix and grid
        gram = self._cached(source, ("xx", k), lambda: gram_columns(train, ones, ones, dev))

        def inverse() -> torch.Tensor:
            g = gram.clone()
            g.diagonal().add_(model.l2)
            return torch.linalg.inv(g)

        if len(model.settings.like_threshold_grid) > 1:  # the same l2 comes back for the next threshold
            p = self._cached(source, ("p", k, model.l2), inverse)
        else:
            p = inverse()
        if model.target in ("liked", "graded"):
            xty = self._cached(source, ("xy", k, model.target, model.like_threshold),
                               lambda: gram_columns(train, ones, y_values, dev))  # fmt: skip
            cmat = p @ xty
        else:
            cmat = p * -model.l2  # P X'X = I - l2 P
            cmat.diagonal().add_(1.0)
        cmat.addcmul_(p, (torch.diagonal(cmat) / torch.diagonal(p))[None, :], value=-1.0)
        del p
        cmat.fill_diagonal_(0.0)
        assert cmat.shape == (k, k)
        model.weights.copy_(cmat.float())


def select_columns(m: Csr, cols: np.ndarray) -> Csr:
    """The columns `cols` (sorted) of `m`, renumbered 0..len(cols)-1; rows kept."""
    pos = np.full(m.n_cols, -1, dtype=np.int64)
    pos[cols] = np.arange(cols.size)
    r, c, v = m.to_coo()
    keep = pos[c] >= 0
    return Csr.from_coo(r[keep], pos[c[keep]], v[keep], m.n_rows, cols.size)


GRAM_ROWS = 1024  # rows of A' multiplied at a time (bounds the sparse product's intermediate memory)


def gram_columns(m: Csr, left: np.ndarray, right: np.ndarray, device: torch.device) -> torch.Tensor:
    """A' B in float64, where A and B have the sparsity pattern of `m` (users x movies) with values `left`
    and `right` (in `m`'s storage order): sparse x sparse products, `GRAM_ROWS` rows of A' at a time, so
    nothing users x movies is ever dense. Integer-valued entries are summed exactly.

    The work is the sum over users of (ratings per user)^2, not ratings x movies as with dense column chunks
    of B (replaced: on a 40,000 x 3,000 synthetic matrix with 2M ratings 2.0 s instead of 8.1 s, one thread;
    a 6,000-movie Gram from 6M ratings 11 s)."""
    n = m.n_cols
    r, c, _ = m.to_coo()
    a_t = _csr_tensor(c, r, left, (n, m.n_rows), device)  # A' (movies x users)
    b = _csr_tensor(r, c, right, (m.n_rows, n), device)  # B (users x movies)
    crow, col, val = a_t.crow_indices(), a_t.col_indices(), a_t.values()
    out = torch.empty(n, n, dtype=torch.float64, device=device)
    for s in range(0, n, GRAM_ROWS):
        e = min(s + GRAM_ROWS, n)
        lo, hi = int(crow[s]), int(crow[e])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch flags sparse CSR as beta
            rows = torch.sparse_csr_tensor(crow[s : e + 1] - lo, col[lo:hi], val[lo:hi], (e - s, m.n_rows))
            out[s:e] = (rows @ b).to_dense()
    return out


def _csr_tensor(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    index = torch.from_numpy(np.vstack([rows, cols]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch flags sparse CSR as beta
        coo = torch.sparse_coo_tensor(index, torch.from_numpy(values.astype(np.float64)), shape, check_invariants=False)
        return coo.coalesce().to_sparse_csr().to(device)


KNN_DENSE_CELLS = 50_000_000  # users x movies up to which the kNN solve uses dense float64 matrices (as always)


class KnnBaselineSolver(Solver):
    """Ridge biases by alternating closed-form steps, then shrunk Pearson-baseline similarities, top neighbours."""

    def grid(self, model: Recommender) -> list[Settings]:
        assert isinstance(model, KNNBaseline)
        return [{"l2": l2} for l2 in _l2_grid(model)]

    def apply(self, model: Recommender, settings: Settings) -> None:
        assert isinstance(model, KNNBaseline)
        model.l2 = float(settings["l2"])

    def solve(self, model: Recommender, train: Csr) -> None:
        assert isinstance(model, KNNBaseline)
        n_u, n_i = train.n_rows, model.config.n_items
        r, c, v = train.to_coo()
        v = v.astype(np.float64)
        mu = float(v.mean()) if v.size else 0.0
        cnt_i = np.bincount(c, minlength=n_i)
        cnt_u = np.bincount(r, minlength=n_u)
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        for _ in range(max(model.bias_steps, 1)):
            bi = np.bincount(c, v - mu - bu[r], minlength=n_i) / (model.reg_item + cnt_i)
            bu = np.bincount(r, v - mu - bi[c], minlength=n_u) / (model.reg_user + cnt_u)
        resid = v - mu - bu[r] - bi[c]
        if model.max_items > 0 and (n_i > model.max_items or n_u * n_i > KNN_DENSE_CELLS):
            # sparse products over the most rated movies: no users x movies matrix, k x k similarities
            cols = np.sort(np.argsort(-cnt_i, kind="stable")[: model.max_items])
            model.set_kept(torch.from_numpy(cols))
            pos = np.full(n_i, -1, dtype=np.int64)
            pos[cols] = np.arange(cols.size)
            keep = pos[c] >= 0
            sub = Csr.from_coo(r[keep], pos[c[keep]], np.ones(int(keep.sum())), n_u, cols.size)
            ek, ones = resid[keep], np.ones(int(keep.sum()))
            dev = torch.device("cpu")
            num = gram_columns(sub, ek, ek, dev)
            sq = gram_columns(sub, ek * ek, ones, dev)  # sq[i, j]: sum of e_ui^2 over the users who rated both
            common = gram_columns(sub, ones, ones, dev)
            n_i = cols.size
        else:
            e = torch.zeros(n_u, n_i, dtype=torch.float64)
            m = torch.zeros(n_u, n_i, dtype=torch.float64)
            rt, ct = torch.from_numpy(r), torch.from_numpy(c)
            e[rt, ct] = torch.from_numpy(resid)
            m[rt, ct] = 1.0
            num = e.T @ e
            sq = (e * e).T @ m  # sq[i, j]: sum of e_ui^2 over the users who rated both i and j
            common = m.T @ m
            del e, m
        den = torch.sqrt(sq * sq.T)
        rho = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
        del num, sq, den
        s = rho * common / (common + model.shrink)
        s.fill_diagonal_(0.0)
        s = s.clamp_min(0.0).pow(model.power)
        k = min(model.neighbors, n_i)
        top = torch.topk(s, k, dim=1)
        kept = torch.zeros_like(s).scatter_(1, top.indices, top.values)
        model.mu.fill_(mu)
        model.item_bias.copy_(torch.from_numpy(bi).float())
        model.sim.copy_(kept.float())


class PopularitySolver(Solver):
    def solve(self, model: Recommender, train: Csr) -> None:
        assert isinstance(model, Popularity)
        counts = np.bincount(train.indices, minlength=model.config.n_items).astype(np.float32)
        model.counts.copy_(torch.from_numpy(counts))


# The solver of each closed-form family (a new closed-form family adds its line here).
SOLVERS: dict[type[Recommender], Solver] = {
    EASE: EaseSolver(),
    KNNBaseline: KnnBaselineSolver(),
    Popularity: PopularitySolver(),
}


def solver_for(model: Recommender) -> Solver:
    try:
        return SOLVERS[type(model)]
    except KeyError:
        raise ValueError(f"no closed-form solver for {type(model).__name__}; add one to SOLVERS") from None


class ClosedFormTrainer(Trainer):
    """Solve for every candidate setting of the family's grid (the settings' l2_grid x like_threshold_grid,
    each defaulting to the configured value) and keep the best on validation: NDCG@10 for ranking models,
    RMSE for rating models."""

    def fit(self, run: FitRun, options: FitOptions) -> FitResult:
        start = time.perf_counter()
        model, train, device = run.model, run.train, run.device
        valid = run.valid if run.valid is not None and run.valid.nnz > 0 else None
        solver = solver_for(model)
        result = FitResult(model=model, device=str(device))
        grid = solver.grid(model)
        ranking = model.objective == "ranking"
        best_i, best = 0, math.inf
        for i, settings in enumerate(grid, start=1):
            t0 = time.perf_counter()
            solver.apply(model, settings)
            solver.solve(model, train)
            ndcg = rmse = float("nan")
            if valid is not None:
                if ranking:
                    ndcg = validation_ndcg(model, train, valid, device)
                else:
                    rmse = pooled_rmse(model, train, valid, device)
            stats = EpochStats(i, float("nan"), rmse, time.perf_counter() - t0, valid_ndcg=ndcg)
            result.history.append(stats)
            if options.on_epoch is not None:
                options.on_epoch(stats)
            score = -ndcg if ranking else rmse
            if valid is not None and score < best:
                best, best_i = score, i - 1
        settings = grid[best_i]
        solver.apply(model, settings)
        if len(grid) > 1:
            solver.solve(model, train)  # the last solve was another candidate's
        solver.clear()
        model.eval()
        result.best_epoch = best_i + 1
        if valid is not None:
            if ranking:
                result.best_valid_ndcg = -best
            else:
                result.best_valid_rmse = best
        result.chosen = dict(settings)
        result.seconds = time.perf_counter() - start
        return result

    def finalize(self, model: Recommender, full: Csr, train_config: TrainConfig) -> None:
        if not train_config.for_shape(full.n_rows, full.n_cols).settings.finalize_full:
            return  # large data: the solve on the fitting split serves (the kNN-baseline member)
        solver = solver_for(model)
        solver.solve(model, full)
        solver.clear()
