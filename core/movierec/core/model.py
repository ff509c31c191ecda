"""Recommender models as torch modules built from a `ModelConfig`. No I/O here.

Every model maps a batch of user rating vectors `x` (B x n_items, 0 = unrated) to an output of the same shape:
`forward` is what the training loss sees, `scores` is what inference uses (predicted ratings for a rating
model, preference scores for a ranking model; higher is better).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from movierec.core.config import Activation, ModelConfig
from movierec.core.sparse import Csr
from movierec.trainer.config import TrainConfig

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def activation(name: Activation | str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(_ACTIVATIONS)}") from None


class Autoencoder(nn.Module):
    """User-based autoencoder: n_items -> hidden[0] -> ... -> hidden[-1] -> n_items.

    The encoder is the first half of `hidden` up to the smallest layer (the code), the decoder the rest, so
    20-10-20 encodes to 10. Optional input dropout makes it a denoising autoencoder; dropout on the code
    regularizes (Kuchaiev & Ginsburg 2017).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        sizes = [config.n_items, *config.hidden]
        code_at = 1 + min(range(len(config.hidden)), key=lambda i: config.hidden[i])
        enc: list[nn.Module] = []
        for i in range(code_at):
            enc += [nn.Linear(sizes[i], sizes[i + 1]), activation(config.activation)]
        dec: list[nn.Module] = []
        for i in range(code_at, len(sizes) - 1):
            dec += [nn.Linear(sizes[i], sizes[i + 1]), activation(config.activation)]
        dec += [nn.Linear(sizes[-1], config.n_items), activation(config.output_activation)]
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else nn.Identity()
        self.encoder = nn.Sequential(*enc)
        self.code_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.decoder = nn.Sequential(*dec)
        # (key, the first layer's weight transposed) for scores_sparse; a plain attribute, not in the state dict
        self._weight_t_cache: tuple[tuple[int, int, str], torch.Tensor] | None = None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.input_dropout(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.code_dropout(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def scores_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """`scores` (inference) of a sparse CSR rating matrix (rows = users) without densifying it: the first
        layer reads only the weight rows of rated movies. Synthetic 20,000-movie classic model, 1 thread: the
        first layer for 16 users 335 -> 8 us (and no dense batch to build or mask)."""
        if self.training:
            return self.forward(x.to_dense())
        first = self.encoder[0]
        assert isinstance(first, nn.Linear)
        h = x @ self._first_weight_t(first.weight) + first.bias
        return self.decode(self.encoder[1:](h))

    def _first_weight_t(self, weight: torch.Tensor) -> torch.Tensor:
        """weight.t() as a contiguous tensor (what the sparse product needs), made once per weight version:
        keyed by storage address, in-place version counter and device, so an updated or moved weight never
        meets a stale copy."""
        key = (weight.data_ptr(), weight._version, str(weight.device))
        cached = self._weight_t_cache
        if cached is None or cached[0] != key:
            cached = self._weight_t_cache = (key, weight.detach().t().contiguous())
        return cached[1]


def _binary_csr(x: torch.Tensor) -> torch.Tensor:
    """A sparse CSR matrix with 1.0 where `x` stores a nonzero value (0.0 where it stores a zero)."""
    return _with_values(x, (x.values() != 0).to(x.dtype))


# Model families by `ModelConfig.kind`. Each takes the config and returns an nn.Module with `scores`.
MODEL_TYPES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "autoencoder": Autoencoder,
}


# --------------------------------------------------------------------------------------------------------------
# Model families beyond the user autoencoder. Class attributes tell the fit loop how to train each one:
#   orientation  "user" (rows = users, the default) or "item" (rows = items: I-AutoRec)
#   objective    "rating" (masked MSE on observed ratings; validation RMSE) or "ranking" (top-N; validation NDCG@10)
#   closed_form  True when the model is solved, not trained by gradient steps (EASE)
# Models that need the full training matrix after fitting (item codes, the EASE weights refit on all of it)
# implement `finalize(full: Csr)`; the pipeline calls it before saving, so the artifact holds everything
# `scores` needs.
# --------------------------------------------------------------------------------------------------------------

_KEY_MODULUS = 2**31 - 1


def _rating_keys(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """An exact integer fingerprint of each rating row (half-star resolution): equal rows give equal keys."""
    q = torch.round(x * 2).to(torch.int64)
    return (q * weights).sum(dim=1)


class IAutoRec(nn.Module):
    """I-AutoRec (Sedhain et al. 2015): an item-based autoencoder users -> hidden -> users, masked MSE.

    Training sees item vectors (a movie's ratings by every user). Serving needs user vectors in and all movies
    out, so `finalize` stores each movie's code `h_i = g(V r_i + mu)` computed from the full training matrix and
    a fingerprint of every known user's rating row. `scores(x)`:
      * a row equal to a known user's training history gets that user's decoder row: W_u . h_i + b_u
        (exactly the model's prediction for that user);
      * any other row (a new or changed user) is folded in: the decoder row is re-estimated by ridge
        regression of the row's ratings on the codes of the movies it rated (with an intercept), which is the
        problem the decoder solves for each user during training with the codes held fixed. Approximation:
        the codes themselves do not see the new ratings. `extra["fold_in_l2"]` (default 100, picked on u1's
        validation split: folding in every user there gives RMSE 0.889 vs 0.890 for the trained decoder rows,
        0.918 at l2 10, 0.901 at 300).
    """

    orientation = "item"
    objective = "rating"
    key_weights: torch.Tensor
    item_codes: torch.Tensor
    user_keys: torch.Tensor
    steps: torch.Tensor
    encoder: nn.Linear
    decoder: nn.Linear

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        n_users = int(config.extra.get("n_users", 0))
        if n_users <= 0:
            raise ValueError("IAutoRec needs extra['n_users'] > 0 (set by the pipeline from the training data)")
        d = config.hidden[0]
        self.fold_in_l2 = float(config.extra.get("fold_in_l2", 100.0))
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else nn.Identity()
        self.encoder = nn.Linear(n_users, d)
        self.act = activation(config.activation)
        self.code_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.decoder = nn.Linear(d, n_users)
        self.out_act = activation(config.output_activation)
        gen = torch.Generator().manual_seed(12345)
        self.register_buffer("key_weights", torch.randint(1, _KEY_MODULUS, (config.n_items,), generator=gen))
        self.register_buffer("item_codes", torch.zeros(config.n_items, d))
        self.register_buffer("user_keys", torch.zeros(n_users, dtype=torch.int64))
        # training forward passes so far; saved with the weights, so the state the fit loop keeps (the best
        # validation epoch) records how many full-batch steps reached it (what `refit` repeats)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, x_items: torch.Tensor) -> torch.Tensor:
        """Item vectors (B x n_users) -> reconstructed item vectors (training orientation)."""
        if self.training and torch.is_grad_enabled():
            self.steps += 1
        h = self.code_dropout(self.act(self.encoder(self.input_dropout(x_items))))
        return self.out_act(self.decoder(h))

    def refit(self, full: Csr, train_config: TrainConfig) -> None:
        """Retrain from a fresh initialization on every rating of `full` (users x items) for the number of
        full-batch steps the validation split chose (`steps`), with the same optimizer, lr, L2 and seed.

        Only for full-batch training (`batch_size` >= number of movies, the I-AutoRec presets): then one step
        is one epoch and the chosen step count transfers to the larger matrix.
        """
        from movierec.core.device import dense_rows
        from movierec.trainer.losses import masked_mse

        steps = int(self.steps)
        if steps <= 0 or train_config.batch_size < full.n_cols:
            return
        device = self.item_codes.device
        x = dense_rows(full.transpose(), device)
        x = x[(x != 0).any(dim=1)]
        torch.manual_seed(train_config.seed)
        for layer in (self.encoder, self.decoder):
            layer.reset_parameters()
        if train_config.optimizer == "rprop":
            opt: torch.optim.Optimizer = torch.optim.Rprop(self.parameters(), lr=train_config.lr)
        else:
            opt = torch.optim.Adam(self.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
        l2 = float(train_config.extra.get("l2", 0.0))
        was_training = self.training
        self.train()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss, _n = masked_mse(self(x), x)
            if l2:
                loss = loss + 0.5 * l2 * (self.encoder.weight.square().sum() + self.decoder.weight.square().sum())
            loss.backward()
            opt.step()
        self.steps.fill_(steps)
        self.train(was_training)

    @torch.no_grad()
    def finalize(self, full: Csr, batch_size: int = 1024) -> None:
        from movierec.core.device import dense_batch

        was_training = self.training
        self.eval()
        device = self.item_codes.device
        items_t = full.transpose()
        for s in range(0, items_t.n_rows, batch_size):
            rows = np.arange(s, min(s + batch_size, items_t.n_rows))
            x = dense_batch(items_t, rows, device)
            self.item_codes[s : s + rows.size] = self.act(self.encoder(x))
        for s in range(0, full.n_rows, batch_size):
            rows = np.arange(s, min(s + batch_size, full.n_rows))
            self.user_keys[s : s + rows.size] = _rating_keys(dense_batch(full, rows, device), self.key_weights)
        self.train(was_training)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        keys = _rating_keys(x, self.key_weights)
        sorted_keys, order = torch.sort(self.user_keys)
        pos = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
        known = (sorted_keys[pos] == keys) & (x != 0).any(dim=1)
        out = torch.empty_like(x)
        if known.any():
            u = order[pos[known]]
            out[known] = self.out_act(self.decoder.weight[u] @ self.item_codes.T + self.decoder.bias[u, None])
        if (~known).any():
            out[~known] = self.fold_in(x[~known])
        return out

    def fold_in(self, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        """Ridge fold-in of new rating rows (dual form: one |rated| x |rated| solve per row, batched)."""
        codes = self.item_codes
        out = torch.empty_like(x)
        lens = (x != 0).sum(dim=1)
        order = torch.argsort(lens)
        c2 = 100.0  # squared scale of the constant feature: the intercept is barely shrunk
        for s in range(0, order.numel(), chunk):
            rows = order[s : s + chunk]
            xb = x[rows]
            length = max(int(lens[rows].max()), 1)
            idx = torch.topk((xb != 0).float(), length, dim=1).indices
            valid = torch.arange(length, device=x.device)[None, :] < lens[rows, None]
            feats = codes[idx] * valid[..., None]
            y = xb.gather(1, idx) * valid
            kernel = feats @ feats.transpose(1, 2) + c2 * (valid[:, :, None] & valid[:, None, :])
            kernel = kernel + self.fold_in_l2 * torch.eye(length, device=x.device)
            alpha = torch.linalg.solve(kernel, y.unsqueeze(-1)).squeeze(-1)
            w = (feats * alpha[..., None]).sum(dim=1)
            out[rows] = self.out_act(w @ codes.T + c2 * alpha.sum(dim=1, keepdim=True))
        return out


class MultVAE(nn.Module):
    """Mult-VAE / Mult-DAE (Liang et al. 2018) for top-N: which movies a user will rate next.

    Input: the user's rated movies as a binary vector, L2-normalized, with input dropout during training.
    `hidden` = encoder sizes, the last one the latent code (decoder mirrored). Output: logits of a multinomial
    over movies (`scores`; higher = more likely). `extra`: variational (bool; Mult-VAE if true), beta_max,
    anneal_steps (KL weight grows linearly to beta_max over that many training steps).
    """

    orientation = "user"
    objective = "ranking"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.variational = bool(config.extra.get("variational", True))
        self.beta_max = float(config.extra.get("beta_max", 0.2))
        self.anneal_steps = int(config.extra.get("anneal_steps", 2000))
        self.steps = 0
        self.kl = torch.zeros(())
        sizes = [config.n_items, *config.hidden]
        enc: list[nn.Module] = []
        for i in range(len(sizes) - 2):
            enc += [nn.Linear(sizes[i], sizes[i + 1]), activation(config.activation)]
        self.encoder = nn.Sequential(*enc)
        code_in, code = sizes[-2], sizes[-1]
        self.to_code = nn.Linear(code_in, code * 2 if self.variational else code)
        dec_sizes = [code, *reversed(sizes[1:-1]), config.n_items]
        dec: list[nn.Module] = []
        for i in range(len(dec_sizes) - 1):
            dec.append(nn.Linear(dec_sizes[i], dec_sizes[i + 1]))
            if i < len(dec_sizes) - 2:
                dec.append(activation(config.activation))
        self.decoder = nn.Sequential(*dec)
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else nn.Identity()
        self.code_size = code
        self.code_act = activation(config.activation) if not self.variational else nn.Identity()

    def beta(self) -> float:
        return min(self.beta_max, self.beta_max * self.steps / max(self.anneal_steps, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = (x != 0).float()
        b = nn.functional.normalize(b, dim=1)
        h = self.encoder(self.input_dropout(b))
        z = self.to_code(h)
        if self.variational:
            mu, logvar = z[:, : self.code_size], z[:, self.code_size :]
            if self.training:
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                self.kl = (-0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(dim=1)).mean()
                self.steps += 1
            else:
                z = mu
        else:
            z = self.code_act(z)
            self.kl = torch.zeros((), device=x.device)
        return self.decoder(z)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


SPARSE_INPUT_DENSITY = 0.1  # below this fraction of rated entries EASE multiplies a sparse input


class EASE(nn.Module):
    """EASE (Steck 2019), the "embarrassingly shallow" linear autoencoder, solved in closed form.

    B = argmin ||Y - X B||^2 + l2 ||B||^2 subject to diag(B) = 0, with X = binary "rated" matrix and
    Y = X (extra target="rated", the original), Y = the "liked" matrix (rating >= like_threshold; target
    "liked"), which ranks movies the user is likely to rate highly, or Y graded by stars above the threshold
    (target "graded": 4 -> 1, 5 -> 2). With P = (X'X + l2 I)^-1 and C = P X'Y:
    B = C - P diag(diag(C) / diag(P)). `scores(x) = binary(x) @ B`. Memory: n_items^2 floats (fine for
    ml-100k/ml-1m; not for ml-25m). `extra`: l2 (the weight), l2_grid (candidates the fit loop picks from on
    the validation split), target, like_threshold.
    """

    orientation = "user"
    objective = "ranking"
    closed_form = True
    weights: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.l2 = float(config.extra.get("l2", 500.0))
        self.target = str(config.extra.get("target", "rated"))
        self.like_threshold = float(config.extra.get("like_threshold", 4.0))
        self.register_buffer("weights", torch.zeros(config.n_items, config.n_items))
        # a trainable scalar so optimizers and device moves behave like any other module; unused in scores
        self.dummy = nn.Parameter(torch.zeros(()))

    def solve(self, train: Csr, l2: float | None = None) -> None:
        """Fit the weights on the rows of `train` (users x items) in closed form."""
        if l2 is not None:
            self.l2 = float(l2)
        dev = self.weights.device
        n = self.config.n_items
        r, c, v = train.to_coo()
        rt, ct = torch.from_numpy(r).to(dev), torch.from_numpy(c).to(dev)
        x = torch.zeros(train.n_rows, n, dtype=torch.float64, device=dev)
        x[rt, ct] = 1.0
        gram = x.T @ x
        gram.diagonal().add_(self.l2)
        p = torch.linalg.inv(gram)
        if self.target in ("liked", "graded"):
            y = torch.zeros_like(x)
            keep = torch.from_numpy(v >= self.like_threshold).to(dev)
            if self.target == "liked":
                y[rt[keep], ct[keep]] = 1.0
            else:  # graded: 1 at the threshold, one more per star above it
                y[rt[keep], ct[keep]] = torch.from_numpy(v[v >= self.like_threshold] - self.like_threshold + 1).to(
                    dev, torch.float64
                )
            cmat = p @ (x.T @ y)
        else:
            cmat = torch.eye(n, dtype=torch.float64, device=dev) - p * self.l2  # P X'X = I - l2 P
        b = cmat - p * (torch.diagonal(cmat) / torch.diagonal(p))[None, :]
        b.fill_diagonal_(0.0)
        self.weights.copy_(b.float())

    def finalize(self, full: Csr) -> None:
        self.solve(full)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rated = (x != 0).float()
        # Rating rows are sparse (a few percent of the catalog): summing the B rows of the rated movies is
        # 2-5x faster than the dense product (measured on ml-100k: one user 0.48 -> 0.10 ms, 32 users
        # 1.8 -> 0.85 ms). Dense rows take the dense product.
        if _is_sparse(rated):
            return torch.sparse.mm(rated.to_sparse(), self.weights)
        return rated @ self.weights

    def scores_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """`scores` of a sparse CSR rating matrix (rows = users), never densified: the sum of the B rows of
        each user's rated movies. The serving path: it skips building, comparing and re-sparsifying a dense
        batch (ml-100k, 32 users, 1 thread: 0.98 ms for `forward` on the dense batch, 0.50 ms here)."""
        return _binary_csr(x) @ self.weights

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def _is_sparse(rated: torch.Tensor) -> bool:
    return bool(rated.numel()) and float(rated.mean()) < SPARSE_INPUT_DENSITY


class Popularity(nn.Module):
    """Most popular: every user gets the movies rated by the most training users (a reference, not a model)."""

    orientation = "user"
    objective = "ranking"
    closed_form = True
    counts: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.l2 = 0.0
        self.register_buffer("counts", torch.zeros(config.n_items))
        self.dummy = nn.Parameter(torch.zeros(()))

    def solve(self, train: Csr, l2: float | None = None) -> None:
        counts = np.bincount(train.indices, minlength=self.config.n_items).astype(np.float32)
        self.counts.copy_(torch.from_numpy(counts))

    def finalize(self, full: Csr) -> None:
        self.solve(full)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(x.shape[0], -1).clone()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class Ensemble(nn.Module):
    """A linear blend of rating models: sum_k w_k * member_k.scores(x) + w_0.

    `extra["members"]` lists {"model": ModelConfig dict, "train": TrainConfig dict}; the fit loop trains each
    member on the same training/validation split and fits the blend weights by least squares on the
    validation ratings (`extra["weights"]`, stored in the `blend` buffer). Members may be user- or item-based.
    """

    orientation = "user"
    objective = "rating"
    is_ensemble = True
    blend: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        members = config.extra.get("members", [])
        if not members:
            raise ValueError("an ensemble needs extra['members'] (a list of {'model': ..., 'train': ...})")
        self.member_configs = [self.member_config(i) for i in range(len(members))]
        self.members = nn.ModuleList([build_model(c) for c in self.member_configs])
        weights = config.extra.get("weights") or [1.0 / len(members)] * len(members) + [0.0]
        self.register_buffer("blend", torch.tensor(weights, dtype=torch.float32))

    def member_config(self, i: int) -> ModelConfig:
        spec = dict(self.config.extra["members"][i]["model"])
        extra = {**spec.get("extra", {})}
        if "n_users" in self.config.extra:
            extra["n_users"] = self.config.extra["n_users"]
        return ModelConfig.from_dict({**spec, "n_items": self.config.n_items, "extra": extra})

    def finalize(self, full: Csr) -> None:
        """Called once with every training rating before saving. With `extra["refit_full"]`, members that can
        (`refit`) are first retrained on all of them for the step count chosen on the validation split, keeping
        the blend weights fitted there."""
        refit = bool(self.config.extra.get("refit_full", False))
        for i, member in enumerate(self.members):
            member_refit = getattr(member, "refit", None) if refit else None
            if member_refit is not None:
                member_refit(full, TrainConfig.from_dict(self.config.extra["members"][i].get("train", {})))
            fin = getattr(member, "finalize", None)
            if fin is not None:
                fin(full)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blend[-1] + torch.zeros_like(x)
        for w, member in zip(self.blend[:-1], self.members, strict=True):
            out = out + w * getattr(member, "scores", member)(x)
        return out


class KNNBaseline(nn.Module):
    """Item-item neighbourhood model on baseline residuals (Koren 2008's kNN-baseline), solved in closed form.

    Baseline b_ui = mu + b_u + b_i with ridge biases fitted by alternating closed-form steps (`reg_item`,
    `reg_user`). Residuals e_ui = r_ui - b_ui give a shrunk Pearson-baseline similarity between movies:
    s_ij = rho_ij * n_ij / (n_ij + shrink) (rho over the n_ij users who rated both), raised to `power`;
    each movie keeps its `neighbors` most similar movies (positive similarities only). Prediction:
        r_ui = b_ui + sum_j s_ij e_uj / (sum_j s_ij + l2),   j over the user's rated neighbours of i,
    so users with few rated neighbours of i are shrunk toward the baseline (`l2`). Everything depends on the
    input row only (b_u is recomputed from it given the item biases), so new users fold in exactly.
    """

    orientation = "user"
    objective = "rating"
    closed_form = True
    mu: torch.Tensor
    item_bias: torch.Tensor
    sim: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ex = config.extra
        self.l2 = float(ex.get("l2", 1.0))
        self.reg_item = float(ex.get("reg_item", 10.0))
        self.reg_user = float(ex.get("reg_user", 15.0))
        self.shrink = float(ex.get("shrink", 100.0))
        self.power = float(ex.get("power", 1.0))
        self.neighbors = int(ex.get("neighbors", 100))
        self.bias_steps = int(ex.get("bias_steps", 10))
        n = config.n_items
        self.register_buffer("mu", torch.zeros(()))
        self.register_buffer("item_bias", torch.zeros(n))
        self.register_buffer("sim", torch.zeros(n, n))
        self.dummy = nn.Parameter(torch.zeros(()))

    def solve(self, train: Csr, l2: float | None = None) -> None:
        if l2 is not None:
            self.l2 = float(l2)
        n_u, n_i = train.n_rows, self.config.n_items
        r, c, v = train.to_coo()
        v = v.astype(np.float64)
        mu = float(v.mean()) if v.size else 0.0
        cnt_i = np.bincount(c, minlength=n_i)
        cnt_u = np.bincount(r, minlength=n_u)
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        for _ in range(max(self.bias_steps, 1)):
            bi = np.bincount(c, v - mu - bu[r], minlength=n_i) / (self.reg_item + cnt_i)
            bu = np.bincount(r, v - mu - bi[c], minlength=n_u) / (self.reg_user + cnt_u)
        e = torch.zeros(n_u, n_i, dtype=torch.float64)
        m = torch.zeros(n_u, n_i, dtype=torch.float64)
        rt, ct = torch.from_numpy(r), torch.from_numpy(c)
        e[rt, ct] = torch.from_numpy(v - mu - bu[r] - bi[c])
        m[rt, ct] = 1.0
        num = e.T @ e
        sq = (e * e).T @ m  # sq[i, j]: sum of e_ui^2 over the users who rated both i and j
        den = torch.sqrt(sq * sq.T)
        rho = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
        common = m.T @ m
        s = rho * common / (common + self.shrink)
        s.fill_diagonal_(0.0)
        s = s.clamp_min(0.0).pow(self.power)
        k = min(self.neighbors, n_i)
        top = torch.topk(s, k, dim=1)
        kept = torch.zeros_like(s).scatter_(1, top.indices, top.values)
        self.mu.fill_(mu)
        self.item_bias.copy_(torch.from_numpy(bi).float())
        self.sim.copy_(kept.float())

    def finalize(self, full: Csr) -> None:
        self.solve(full)

    def baseline(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b_ui for every movie, rated mask) for a batch of rating rows; b_u is the ridge step given b_i."""
        rated = (x != 0).to(x.dtype)
        resid = (x - self.mu - self.item_bias) * rated
        bu = resid.sum(dim=1, keepdim=True) / (self.reg_user + rated.sum(dim=1, keepdim=True))
        return self.mu + bu + self.item_bias, rated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base, rated = self.baseline(x)
        e = (x - base) * rated
        return base + (e @ self.sim.T) / (rated @ self.sim.T + self.l2)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def _wishart(scale: np.ndarray, df: float, rng: np.random.Generator) -> np.ndarray:
    """One draw of Wishart(scale, df) by the Bartlett decomposition (seeded numpy generator)."""
    d = scale.shape[0]
    a = np.zeros((d, d))
    a[np.diag_indices(d)] = np.sqrt(rng.chisquare(df - np.arange(d)))
    low = np.tril_indices(d, -1)
    a[low] = rng.standard_normal(low[0].size)
    la = np.linalg.cholesky(scale) @ a
    return np.asarray(la @ la.T)


def _with_values(csr: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The same sparsity pattern as `csr` with other stored values (in its storage order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(csr.crow_indices(), csr.col_indices(), values, csr.shape)


def _sparse(rows: np.ndarray, cols: np.ndarray, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor (twice as fast as COO in the sampler's products); torch flags CSR as beta: warning muted."""
    index = torch.from_numpy(np.vstack([rows, cols]))
    coo = torch.sparse_coo_tensor(index, values, shape, check_invariants=False).coalesce()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


class BPMF(nn.Module):
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
    closed_form = True
    mu: torch.Tensor
    item_factors: torch.Tensor
    user_prec: torch.Tensor
    user_mean: torch.Tensor
    implicit_factors: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ex = config.extra
        self.implicit = bool(ex.get("implicit", False))
        self.implicit_power = float(ex.get("implicit_power", 0.5))
        self.dim = int(ex.get("dim", 10))
        self.alpha = float(ex.get("alpha", 1.5))
        self.burn_in = int(ex.get("burn_in", 50))
        self.samples = int(ex.get("samples", 100))
        self.beta0 = float(ex.get("beta0", 2.0))
        self.seed = int(ex.get("seed", 0))
        self.noise_prior = float(ex.get("noise_prior", 0.0))
        if self.dim <= 0 or self.samples <= 0 or self.burn_in < 0 or self.alpha <= 0:
            raise ValueError("BPMF needs dim > 0, samples > 0, burn_in >= 0 and alpha > 0")
        self.l2 = 0.0  # the closed-form fit loop's grid value; unused
        s, n, d = self.samples, config.n_items, self.dim
        self.register_buffer("mu", torch.zeros(()))
        self.register_buffer("item_factors", torch.zeros(s, n, d))
        self.register_buffer("user_prec", torch.eye(d).repeat(s, 1, 1))
        self.register_buffer("user_mean", torch.zeros(s, d))
        self.register_buffer("implicit_factors", torch.zeros(s, n, d) if self.implicit else torch.zeros(0))
        self.dummy = nn.Parameter(torch.zeros(()))
        self._solved_key = ""
        self._outer: torch.Tensor | None = None  # per-item layouts of every sample, built on first use
        self._flat: torch.Tensor | None = None
        self._implicit_flat: torch.Tensor | None = None

    def _hyper(self, f: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(Lambda, mu) drawn from their Normal-Wishart posterior given the factors `f` (rows x dim)."""
        n, d = f.shape
        x = f.numpy()
        mean = x.mean(axis=0)
        cov = (x - mean).T @ (x - mean) / n
        beta = self.beta0 + n
        w_inv = np.eye(d) + n * cov + self.beta0 * n / beta * np.outer(mean, mean)
        w = np.linalg.inv(w_inv)
        lam = _wishart((w + w.T) / 2, d + n, rng)
        mu = rng.multivariate_normal(n * mean / beta, np.linalg.inv(beta * lam))
        return torch.from_numpy(lam), torch.from_numpy(mu)

    def _draw(
        self, ratings: torch.Tensor, mask: torch.Tensor, other: torch.Tensor, lam: torch.Tensor, mean: torch.Tensor,
        gen: torch.Generator, alpha: float | torch.Tensor,
    ) -> torch.Tensor:
        """Every row's factor drawn from its Gaussian posterior given the other side's factors; `alpha` is the
        noise precision (a scalar, or one per row as a column); weights per rating sit in `mask` / `ratings`;
        `mean` is the prior mean (dim, or one per row: rows x dim)."""
        d = self.dim
        outer = (other[:, :, None] * other[:, None, :]).reshape(other.shape[0], d * d)
        prec = (torch.sparse.mm(mask, outer) * alpha).reshape(-1, d, d) + lam
        rhs = torch.sparse.mm(ratings, other) * alpha + (lam @ mean if mean.dim() == 1 else mean @ lam.T)
        chol = torch.linalg.cholesky(prec)
        post_mean = torch.cholesky_solve(rhs.unsqueeze(-1), chol)
        z = torch.randn(post_mean.shape, generator=gen, dtype=post_mean.dtype)
        # P = L L^T: L^-T z has covariance P^-1
        return (post_mean + torch.linalg.solve_triangular(chol.transpose(1, 2), z, upper=True)).squeeze(-1)

    @staticmethod
    def _key(train: Csr) -> str:
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for a in (train.indptr, train.indices, train.values):
            h.update(np.ascontiguousarray(a).tobytes())
        return f"{train.n_cols}:{h.hexdigest()}"

    def solve(self, train: Csr, l2: float | None = None) -> None:
        """Run the sampler on the rows of `train` (users x items); a no-op when it already ran on these ratings."""
        key = self._key(train)
        if key == self._solved_key:
            return
        r, c, v = train.to_coo()
        n_u, n_i, d = train.n_rows, self.config.n_items, self.dim
        mu = float(v.mean()) if v.size else 0.0
        y = torch.from_numpy(v.astype(np.float64) - mu)
        ones = torch.ones_like(y)
        by_user = _sparse(r, c, y, (n_u, n_i)), _sparse(r, c, ones, (n_u, n_i))
        by_item = _sparse(c, r, y, (n_i, n_u)), _sparse(c, r, ones, (n_i, n_u))
        item_major = np.lexsort((r, c))  # the order of by_item's stored values
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        users = torch.randn(n_u, d, generator=gen, dtype=torch.float64) * 0.1
        items = torch.randn(n_i, d, generator=gen, dtype=torch.float64) * 0.1
        # per-user noise precisions (noise_prior > 0): Gamma(noise_prior, noise_prior / alpha) prior, mean alpha
        a0 = self.noise_prior
        counts = np.bincount(r, minlength=n_u)
        alpha_u = np.full(n_u, self.alpha)
        rt, ct = torch.from_numpy(r), torch.from_numpy(c)
        implicit = torch.zeros(n_i, d, dtype=torch.float64)  # Y (stays 0 unless self.implicit)
        lam_y = 1.0
        if self.implicit:
            scale = torch.from_numpy(np.maximum(counts, 1).astype(np.float64) ** -self.implicit_power)
            design = _sparse(r, c, scale[rt], (n_u, n_i))  # A: |N(u)|^-p on every rated cell
            design_t = _sparse(c, r, scale[rt], (n_i, n_u))
            gram = torch.sparse.mm(design_t, design.to_dense())
            eig, basis = torch.linalg.eigh((gram + gram.T) / 2)
            eig = eig.clamp_min(0.0)
        for s in range(self.burn_in + self.samples):
            lam_i, mean_i = self._hyper(items, rng)
            if a0 > 0:  # each rating weighted by its user's precision
                w = torch.from_numpy(alpha_u[r][item_major])
                weighted = (_with_values(by_item[0], by_item[0].values() * w), _with_values(by_item[1], w))
                items = self._draw(*weighted, users, lam_i, mean_i, gen, 1.0)
            else:
                items = self._draw(*by_item, users, lam_i, mean_i, gen, self.alpha)
            if self.implicit:
                lam_u, mean_u = self._hyper(users - torch.sparse.mm(design, implicit), rng)
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
                lam_u, mean_u = self._hyper(users, rng)
                prior_mean = mean_u
            user_alpha = torch.from_numpy(alpha_u)[:, None] if a0 > 0 else self.alpha
            users = self._draw(*by_user, items, lam_u, prior_mean, gen, user_alpha)
            if a0 > 0:
                resid = y - (users[rt] * items[ct]).sum(dim=1)
                sse = np.bincount(r, (resid * resid).numpy(), minlength=n_u)
                alpha_u = rng.gamma(a0 + counts / 2, 1.0 / (a0 / self.alpha + sse / 2))
            k = s - self.burn_in
            if k >= 0:
                self.item_factors[k] = items.float()
                self.user_prec[k] = lam_u.float()
                self.user_mean[k] = mean_u.float()
                if self.implicit:
                    self.implicit_factors[k] = implicit.float()
        self.mu.fill_(mu)
        self._outer, self._flat, self._implicit_flat = None, None, None
        self._solved_key = key

    def finalize(self, full: Csr) -> None:
        self.solve(full)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._outer, self._flat, self._implicit_flat, self._solved_key = None, None, None, ""

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
        rated_sp = rated.to_sparse() if _is_sparse(rated) else None  # once: the implicit term reuses it
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


MODEL_TYPES.update(
    {
        "iautorec": IAutoRec, "multvae": MultVAE, "ease": EASE, "popular": Popularity, "ensemble": Ensemble,
        "knn-baseline": KNNBaseline, "bpmf": BPMF,
    }
)


def member_needs_users(config: ModelConfig) -> bool:
    """Whether a model (or any member of an ensemble) is item-based and so needs extra['n_users']."""
    if getattr(MODEL_TYPES.get(config.kind), "orientation", "user") == "item":
        return True
    return any(
        getattr(MODEL_TYPES.get(m["model"].get("kind", "autoencoder")), "orientation", "user") == "item"
        for m in config.extra.get("members", [])
    )


def model_objective(kind: str) -> str:
    """"rating" or "ranking": what a model kind is trained for (and so which artifact role it fills)."""
    return str(getattr(MODEL_TYPES.get(kind), "objective", "rating"))


def build_model(config: ModelConfig) -> nn.Module:
    try:
        factory = MODEL_TYPES[config.kind]
    except KeyError:
        raise ValueError(f"unknown model kind {config.kind!r}; choose one of: {', '.join(MODEL_TYPES)}") from None
    return factory(config)


def count_parameters(model: nn.Module) -> int:
    return sum(int(p.numel()) for p in model.parameters())


def describe(model: nn.Module) -> dict[str, Any]:
    return {"parameters": count_parameters(model), "class": type(model).__name__}
