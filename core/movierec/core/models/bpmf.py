"""BPMF (Salakhutdinov & Mnih 2008): Bayesian matrix factorization; the Gibbs sampler lives in the trainer
(`movierec.trainer.fit.sampler`), this module scores with the kept samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from movierec.core.config import FamilySettings, ModelConfig
from movierec.core.models.base import Recommender, drop_legacy_keys, is_sparse


@dataclass(frozen=True)
class BPMFSettings(FamilySettings):
    """BPMF settings: factors, noise precision and its prior, sampler length and seed, implicit factors."""

    dim: int = 10
    alpha: float = 1.5
    burn_in: int = 50
    samples: int = 100
    beta0: float = 2.0
    seed: int = 0
    noise_prior: float = 0.0
    implicit: bool = False
    implicit_power: float = 0.5


class BPMF(Recommender):
    """Bayesian probabilistic matrix factorization (Salakhutdinov & Mnih 2008) by Gibbs sampling.

    r_ui - mu ~ N(u_u . v_i, 1 / alpha); user factors u_u ~ N(mu_U, Lambda_U^-1), item factors likewise, with
    Normal-Wishart hyperpriors (mu_0 = 0, beta_0, W_0 = I, nu_0 = dim). Each sweep samples the item
    hyperparameters and every item factor given the users, then the user hyperparameters and every user factor
    given the items: per row, precision P = Lambda + alpha sum_j v_j v_j^T over its ratings (one sparse
    product with the per-item outer products for all rows at once), mean P^-1 (alpha sum_j r_j v_j +
    Lambda mu), batched Cholesky, a seeded Gaussian draw. After `burn_in` sweeps, `samples` sweeps are kept:
    each keeps its item factors and user hyperparameters (Lambda_U, mu_U).

    `scores(x)` is a pure function of the rating row, so a known user's training history and any new vector
    are treated alike: for every kept sample the user's factor is the posterior mean given that sample's item
    factors and hyperparameters (a D x D solve; Rao-Blackwellized in place of the sampled user factor), and the
    prediction averages u . v_i + mu over the samples. Extra: dim, alpha, burn_in, samples, beta0, seed,
    noise_prior, implicit, implicit_power.

    noise_prior a0 > 0: each training user gets its own noise precision alpha_u ~ Gamma(a0, rate a0 / alpha)
    (prior mean alpha), drawn every sweep from its posterior Gamma(a0 + n_u / 2, a0 / alpha + sse_u / 2), in
    the spirit of robust BPMF (Lakshminarayanan et al. 2011): erratic raters weigh less on the movie factors.
    Scoring folds every row in with the shared `alpha`. a0 = 0: one shared precision, the paper's model.

    implicit (SVD++'s implicit feedback, here in the user prior as in Rendle's MCMC factorization machines): each
    movie j also has an implicit factor y_j ~ N(0, I / lambda_y) and a user's prior mean becomes mu_U +
    |N(u)|^-p sum_{j in N(u)} y_j over the movies N(u) the user rated (p = `implicit_power`, 0.5), so *which*
    movies a user rated moves the factor even where the ratings are few. Per sweep all y are drawn jointly and
    exactly: with Lambda_U = Q D Q^T and A^T A = V S V^T (A: users x movies, |N(u)|^-p on rated cells,
    eigendecomposed once) the posterior of Y Q splits per rotated dimension k into V diag(1 / (lambda_y +
    d_k S)) V^T, i.e. n_items x dim element-wise operations between two products with V. lambda_y ~
    Gamma(1 + n_items dim / 2, 1 + |Y|^2 / 2) (prior Gamma(1, 1)); the user hyperparameters are drawn from the
    user factors minus their implicit part. The kept samples also keep Y; scoring adds each sample's implicit
    term of the input row to the prior mean, so it stays a function of the rating row alone.
    The sampler runs on the CPU (float64) whatever the module's device; the kept samples go to its buffers.
    """

    orientation = "user"
    objective = "rating"
    trained_by = "sampler"
    mu: torch.Tensor
    item_factors: torch.Tensor
    user_prec: torch.Tensor
    user_mean: torch.Tensor
    implicit_factors: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.settings = BPMFSettings.parse(config.extra, f"model kind {config.kind!r}")
        ex = self.settings
        self.implicit = ex.implicit
        self.implicit_power = ex.implicit_power
        self.dim = ex.dim
        self.alpha = ex.alpha
        self.burn_in = ex.burn_in
        self.samples = ex.samples
        self.beta0 = ex.beta0
        self.seed = ex.seed
        self.noise_prior = ex.noise_prior
        if self.dim <= 0 or self.samples <= 0 or self.burn_in < 0 or self.alpha <= 0:
            raise ValueError("BPMF needs dim > 0, samples > 0, burn_in >= 0 and alpha > 0")
        s, n, d = self.samples, config.n_items, self.dim
        self.register_buffer("mu", torch.zeros(()))
        self.register_buffer("item_factors", torch.zeros(s, n, d))
        self.register_buffer("user_prec", torch.eye(d).repeat(s, 1, 1))
        self.register_buffer("user_mean", torch.zeros(s, d))
        self.register_buffer("implicit_factors", torch.zeros(s, n, d) if self.implicit else torch.zeros(0))
        self.solved_key = (
            ""  # what the kept samples were drawn from (the sampler's fingerprint of the ratings)
        )
        self._outer: torch.Tensor | None = None  # per-item layouts of every sample, built on first use
        self._flat: torch.Tensor | None = None
        self._implicit_flat: torch.Tensor | None = None

    def samples_updated(self, solved_key: str) -> None:
        """The sampler wrote new kept samples into the buffers (drawn from the ratings `solved_key` names):
        drop the layouts built from the previous ones."""
        self._outer, self._flat, self._implicit_flat = None, None, None
        self.solved_key = solved_key

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        drop_legacy_keys(state_dict, prefix, ("dummy",))  # a placeholder parameter older artifacts carry
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._outer, self._flat, self._implicit_flat, self.solved_key = None, None, None, ""

    def _layouts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_items x samples*dim^2 outer products v_i v_i^T, n_items x samples*dim factors), built on first use
        (about 70 MB for ml-100k's defaults), so scoring multiplies the rating rows once per layout."""
        if self._outer is None or self._flat is None or self._outer.device != self.item_factors.device:
            v = self.item_factors
            s, n, d = v.shape
            outer = v[:, :, :, None] * v[:, :, None, :]
            self._outer = outer.permute(1, 0, 2, 3).reshape(n, s * d * d).contiguous()
            self._flat = v.permute(1, 0, 2).reshape(n, s * d).contiguous()
            self._implicit_flat = None
        return self._outer, self._flat

    def _implicit_layout(self) -> torch.Tensor:
        """n_items x samples*dim implicit factors y_j of every kept sample (implicit models only)."""
        y = self.implicit_factors
        if self._implicit_flat is None or self._implicit_flat.device != y.device:
            s, n, d = y.shape
            self._implicit_flat = y.permute(1, 0, 2).reshape(n, s * d).contiguous()
        return self._implicit_flat

    def user_factors(self, x: torch.Tensor) -> torch.Tensor:
        """B x samples x dim: each sample's posterior mean user factor given the rating rows `x`."""
        s, _, d = self.item_factors.shape
        outer, flat = self._layouts()
        rated = (x != 0).to(flat.dtype)
        y = (x - self.mu) * rated
        rated_sp = rated.to_sparse() if is_sparse(rated) else None  # once: the implicit term reuses it
        if rated_sp is not None:
            gram, proj = torch.sparse.mm(rated_sp, outer), torch.sparse.mm(y.to_sparse(), flat)
        else:
            gram, proj = rated @ outer, y @ flat
        prec = gram.reshape(-1, s, d, d).double() * self.alpha + self.user_prec.double()
        if self.implicit:  # prior mean mu_U + |N(u)|^-p sum_{j rated} y_j, per sample
            layout = self._implicit_layout()
            implicit = torch.sparse.mm(rated_sp, layout) if rated_sp is not None else rated @ layout
            count = rated.sum(dim=1, keepdim=True).clamp_min(1.0)
            mean = self.user_mean + (implicit * count**-self.implicit_power).reshape(-1, s, d)
        else:
            mean = self.user_mean.expand(1, s, d)
        prior = (self.user_prec @ mean.unsqueeze(-1)).squeeze(-1)  # rows x samples x dim
        rhs = proj.reshape(-1, s, d) * self.alpha + prior
        return torch.linalg.solve(prec, rhs.double().unsqueeze(-1)).squeeze(-1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, flat = self._layouts()
        u = self.user_factors(x)
        return u.reshape(u.shape[0], -1) @ flat.T / self.item_factors.shape[0] + self.mu

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)
