"""Training by Gibbs sampling: BPMF's sampler (`movierec.core.models.bpmf.BPMF` documents the model). It runs
on the CPU (float64) whatever the model's device; the kept samples go to the model's buffers."""

from __future__ import annotations

import hashlib
import time
import warnings

import numpy as np
import torch

from movierec.core.models import BPMF, Recommender
from movierec.core.models.base import with_values
from movierec.core.sparse import Csr
from movierec.trainer.config import TrainConfig
from movierec.trainer.fit.base import FitOptions, FitRun, Trainer
from movierec.trainer.fit.common import EpochStats, FitResult, pooled_rmse, validation_ndcg


class SamplerTrainer(Trainer):
    """Run the sampler on the training rows (one "epoch"), report validation, keep the samples. `finalize`
    samples again from every training rating."""

    def fit(self, run: FitRun, options: FitOptions) -> FitResult:
        start = time.perf_counter()
        model = _bpmf(run.model)
        valid = run.valid if run.valid is not None and run.valid.nnz > 0 else None
        result = FitResult(model=model, device=str(run.device))
        run_sampler(model, run.train)
        model.eval()
        ndcg = rmse = float("nan")
        if valid is not None:
            if model.objective == "ranking":
                ndcg = result.best_valid_ndcg = validation_ndcg(model, run.train, valid, run.device)
            else:
                rmse = result.best_valid_rmse = pooled_rmse(model, run.train, valid, run.device)
        stats = EpochStats(1, float("nan"), rmse, time.perf_counter() - start, valid_ndcg=ndcg)
        result.history.append(stats)
        if options.on_epoch is not None:
            options.on_epoch(stats)
        result.best_epoch = 1
        result.seconds = time.perf_counter() - start
        return result

    def finalize(self, model: Recommender, full: Csr, train_config: TrainConfig) -> None:
        if not train_config.for_shape(full.n_rows, full.n_cols).settings.finalize_full:
            return  # large data: the samples drawn on the fitting split serve
        run_sampler(_bpmf(model), full)


def _bpmf(model: Recommender) -> BPMF:
    if not isinstance(model, BPMF):
        raise TypeError(f"the sampler trains BPMF models, not {type(model).__name__}")
    return model


def _hyper(model: BPMF, f: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(Lambda, mu) drawn from their Normal-Wishart posterior given the factors `f` (rows x dim)."""
    n, d = f.shape
    x = f.numpy()
    mean = x.mean(axis=0)
    cov = (x - mean).T @ (x - mean) / n
    beta = model.beta0 + n
    w_inv = np.eye(d) + n * cov + model.beta0 * n / beta * np.outer(mean, mean)
    w = np.linalg.inv(w_inv)
    lam = _wishart((w + w.T) / 2, d + n, rng)
    mu = rng.multivariate_normal(n * mean / beta, np.linalg.inv(beta * lam))
    return torch.from_numpy(lam), torch.from_numpy(mu)


def _draw(
    model: BPMF,
    ratings: torch.Tensor,
    mask: torch.Tensor,
    other: torch.Tensor,
    lam: torch.Tensor,
    mean: torch.Tensor,
    gen: torch.Generator,
    alpha: float | torch.Tensor,
) -> torch.Tensor:
    """Every row's factor drawn from its Gaussian posterior given the other side's factors; `alpha` is the
    noise precision (a scalar, or one per row as a column); weights per rating sit in `mask` / `ratings`;
    `mean` is the prior mean (dim, or one per row: rows x dim)."""
    d = model.dim
    outer = (other[:, :, None] * other[:, None, :]).reshape(other.shape[0], d * d)
    prec = (torch.sparse.mm(mask, outer) * alpha).reshape(-1, d, d) + lam
    rhs = torch.sparse.mm(ratings, other) * alpha + (lam @ mean if mean.dim() == 1 else mean @ lam.T)
    chol = torch.linalg.cholesky(prec)
    post_mean = torch.cholesky_solve(rhs.unsqueeze(-1), chol)
    z = torch.randn(post_mean.shape, generator=gen, dtype=post_mean.dtype)
    # P = L L^T: L^-T z has covariance P^-1
    return (post_mean + torch.linalg.solve_triangular(chol.transpose(1, 2), z, upper=True)).squeeze(-1)


def _key(train: Csr) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in (train.indptr, train.indices, train.values):
        h.update(np.ascontiguousarray(a).tobytes())
    return f"{train.n_cols}:{h.hexdigest()}"


def run_sampler(model: BPMF, train: Csr) -> None:
    """Run the sampler on the rows of `train` (users x items) and keep its samples in the model's buffers; a
    no-op when it already ran on these ratings."""
    key = _key(train)
    if key == model.solved_key:
        return
    r, c, v = train.to_coo()
    n_u, n_i, d = train.n_rows, model.config.n_items, model.dim
    mu = float(v.mean()) if v.size else 0.0
    y = torch.from_numpy(v.astype(np.float64) - mu)
    ones = torch.ones_like(y)
    by_user = _sparse(r, c, y, (n_u, n_i)), _sparse(r, c, ones, (n_u, n_i))
    by_item = _sparse(c, r, y, (n_i, n_u)), _sparse(c, r, ones, (n_i, n_u))
    item_major = np.lexsort((r, c))  # the order of by_item's stored values
    gen = torch.Generator().manual_seed(model.seed)
    rng = np.random.default_rng(model.seed)
    users = torch.randn(n_u, d, generator=gen, dtype=torch.float64) * 0.1
    items = torch.randn(n_i, d, generator=gen, dtype=torch.float64) * 0.1
    # per-user noise precisions (noise_prior > 0): Gamma(noise_prior, noise_prior / alpha) prior, mean alpha
    a0 = model.noise_prior
    counts = np.bincount(r, minlength=n_u)
    alpha_u = np.full(n_u, model.alpha)
    rt, ct = torch.from_numpy(r), torch.from_numpy(c)
    implicit = torch.zeros(n_i, d, dtype=torch.float64)  # Y (stays 0 unless model.implicit)
    lam_y = 1.0
    if model.implicit:
        scale = torch.from_numpy(np.maximum(counts, 1).astype(np.float64) ** -model.implicit_power)
        design = _sparse(r, c, scale[rt], (n_u, n_i))  # A: |N(u)|^-p on every rated cell
        design_t = _sparse(c, r, scale[rt], (n_i, n_u))
        gram = torch.sparse.mm(design_t, design.to_dense())
        eig, basis = torch.linalg.eigh((gram + gram.T) / 2)
        eig = eig.clamp_min(0.0)
    for s in range(model.burn_in + model.samples):
        lam_i, mean_i = _hyper(model, items, rng)
        if a0 > 0:  # each rating weighted by its user's precision
            w = torch.from_numpy(alpha_u[r][item_major])
            weighted = (with_values(by_item[0], by_item[0].values() * w), with_values(by_item[1], w))
            items = _draw(model, *weighted, users, lam_i, mean_i, gen, 1.0)
        else:
            items = _draw(model, *by_item, users, lam_i, mean_i, gen, model.alpha)
        if model.implicit:
            lam_u, mean_u = _hyper(model, users - torch.sparse.mm(design, implicit), rng)
            # Y | U, mu_U, Lambda_U: independent per dimension of Q^T and per eigenvector of A^T A
            d_k, rot = torch.linalg.eigh(lam_u)
            d_k = d_k.clamp_min(1e-12)
            proj = basis.T @ torch.sparse.mm(design_t, (users - mean_u) @ rot)
            prec_y = lam_y + eig[:, None] * d_k[None, :]
            z = torch.randn(n_i, d, generator=gen, dtype=torch.float64)
            implicit = basis @ (proj * d_k / prec_y + z / prec_y.sqrt()) @ rot.T
            lam_y = float(rng.gamma(1.0 + n_i * d / 2, 1.0 / (1.0 + float((implicit * implicit).sum()) / 2)))
            prior_mean = mean_u + torch.sparse.mm(design, implicit)
        else:
            lam_u, mean_u = _hyper(model, users, rng)
            prior_mean = mean_u
        user_alpha = torch.from_numpy(alpha_u)[:, None] if a0 > 0 else model.alpha
        users = _draw(model, *by_user, items, lam_u, prior_mean, gen, user_alpha)
        if a0 > 0:
            resid = y - (users[rt] * items[ct]).sum(dim=1)
            sse = np.bincount(r, (resid * resid).numpy(), minlength=n_u)
            alpha_u = rng.gamma(a0 + counts / 2, 1.0 / (a0 / model.alpha + sse / 2))
        k = s - model.burn_in
        if k >= 0:
            model.item_factors[k] = items.float()
            model.user_prec[k] = lam_u.float()
            model.user_mean[k] = mean_u.float()
            if model.implicit:
                model.implicit_factors[k] = implicit.float()
    model.mu.fill_(mu)
    model.samples_updated(key)


def _wishart(scale: np.ndarray, df: float, rng: np.random.Generator) -> np.ndarray:
    """One draw of Wishart(scale, df) by the Bartlett decomposition (seeded numpy generator)."""
    d = scale.shape[0]
    a = np.zeros((d, d))
    a[np.diag_indices(d)] = np.sqrt(rng.chisquare(df - np.arange(d)))
    low = np.tril_indices(d, -1)
    a[low] = rng.standard_normal(low[0].size)
    la = np.linalg.cholesky(scale) @ a
    return np.asarray(la @ la.T)


def _sparse(rows: np.ndarray, cols: np.ndarray, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor (twice as fast as COO in the sampler's products); torch flags CSR as beta: warning muted."""
    index = torch.from_numpy(np.vstack([rows, cols]))
    coo = torch.sparse_coo_tensor(index, values, shape, check_invariants=False).coalesce()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()
