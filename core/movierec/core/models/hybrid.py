"""Hybrid autoencoders for cold start: a user autoencoder whose input also takes the user's profile and whose
movie weights are part free, part computed from movie metadata (DropoutNet-style training, Volkovs et al.
2017, fitted by `movierec.trainer.fit.side`).

    code   = act(enc_in(x) + profile @ U + b)                  x: the user's ratings, profile: user features
    h      = act(code @ H + c)
    score  = h . (V_free[i] + f_i @ A_out) + (b_free[i] + f_i . a_bias)      f_i: movie i's features

Every movie weight (input and output) is the sum of a free vector, learned per trained movie, and a vector
computed from the movie's features (genres, decade, title words). A movie added after training has no free
vector: its weights come from its features alone, so it is scored at once, and once callers' rating vectors
contain it, its computed input weights carry those ratings into the code too. Training hides whole rating
rows (the profile alone must predict), keeps only a handful of ratings for others (new users' first
ratings), and hides the free vectors of a random share of movies each step (metadata alone must place
them), so the same weights serve known users, new users and new movies.

Two families share the network and differ in what they learn:
  HybridRating   masked MSE on observed ratings (predicted stars; the cold-rating role)
  HybridRanking  multinomial likelihood of the rated movies, as Mult-DAE (top-N; the cold-ranking role)
Both read which movies were rated and how (centered ratings): a new user's first ratings are mostly the
popular movies a sign-up page shows, so which movies they rated says little and how they rated them a lot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from movierec.core.config import FamilySettings, ModelConfig
from movierec.core.models.base import Recommender, activation


@dataclass(frozen=True)
class HybridSettings(FamilySettings):
    """Sizes of the side information, and the DropoutNet training schedule (read by the trainer)."""

    n_user_features: int = 0
    n_item_features: int = 0
    dim: int = 64  # size of the code and of every movie vector
    profile_only: float = 0.3  # share of training rows whose ratings are all hidden (profile alone)
    few_ratings: float = 0.3  # share of rows that keep only 1..max_revealed of their ratings
    max_revealed: int = 10
    profile_drop: float = 0.2  # share of rows trained without their profile (ratings alone)
    movie_drop: float = 0.2  # share of movies whose free vectors are hidden in a step (metadata alone)
    input_dropout: float = 0.5  # of the ratings the remaining (full) rows keep
    networks: int = 1  # networks trained side by side and averaged
    n_segments: int = 0  # ranking models: user-feature columns that are demographic segments (segment prior)
    prior_weight: float = 0.0  # the segment prior's weight, chosen on the cold validation users by the trainer
    prior_decay: float = 0.0  # > 0: the prior's weight shrinks as prior_decay / (prior_decay + n_rated)
    wide: bool = False  # a direct user-feature x movie path (wide & deep): segment tastes without the code
    count_prior: float = 0.0  # inputs are scaled by 1 / sqrt(n_rated + count_prior): few ratings, small steps
    like_threshold: float = 0.0  # ranking models: > 0 = learn to rank the movies rated at least this high
    global_mean: float = 3.5  # rating models: predictions are offsets from it (filled by the trainer)


class _Network(nn.Module):
    """One hybrid network (the module docstring's formula); `HybridAE` averages `networks` of them."""

    def __init__(self, config: ModelConfig, s: HybridSettings, channels: int) -> None:
        super().__init__()
        n, d, nf, nu = config.n_items, s.dim, s.n_item_features, s.n_user_features
        hidden = config.hidden[0] if config.hidden else d
        self.in_free = nn.Parameter(torch.randn(channels, n, d) * (1.0 / math.sqrt(d)))
        self.in_meta = nn.Parameter(torch.zeros(channels, nf, d))
        self.user_in = nn.Parameter(torch.zeros(nu, d))
        self.in_bias = nn.Parameter(torch.zeros(d))
        self.hidden = nn.Linear(d, hidden)
        self.out_proj = nn.Linear(hidden, d)
        self.out_free = nn.Parameter(torch.randn(n, d) * (0.1 / math.sqrt(d)))
        self.out_meta = nn.Parameter(torch.zeros(nf, d))
        self.out_default = nn.Parameter(torch.zeros(d))  # every movie's vector starts from it
        self.bias_free = nn.Parameter(torch.zeros(n))
        self.bias_meta = nn.Parameter(torch.zeros(nf))
        self.bias_default = nn.Parameter(torch.zeros(()))
        # wide part: user features x movies, again a free part per trained movie plus a metadata part
        self.wide_free = nn.Parameter(torch.zeros(nu if s.wide else 0, n))
        self.wide_meta = nn.Parameter(torch.zeros(nu if s.wide else 0, nf))
        self.act = activation(config.activation)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.count_prior = s.count_prior

    def movie_vectors(
        self, feats: torch.Tensor, keep: torch.Tensor, m: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input weights [channels, n + m, d], output vectors [n + m, d], biases [n + m], wide weights
        [n_user_features, n + m] (0 rows without a wide part)) for `feats` [n + m, nf] whose last m rows are
        movies added after training (no free vectors: metadata only) and `keep` [n + m] (0: free hidden)."""
        free_in: torch.Tensor = self.in_free
        free_out: torch.Tensor = self.out_free
        free_bias: torch.Tensor = self.bias_free
        free_wide: torch.Tensor = self.wide_free
        if m:
            c, _, d = free_in.shape
            free_in = torch.cat([free_in, free_in.new_zeros(c, m, d)], dim=1)
            free_out = torch.cat([free_out, free_out.new_zeros(m, d)])
            free_bias = torch.cat([free_bias, free_bias.new_zeros(m)])
            free_wide = torch.cat([free_wide, free_wide.new_zeros(free_wide.shape[0], m)], dim=1)
        w_in = free_in * keep[None, :, None] + torch.einsum("nf,cfd->cnd", feats, self.in_meta)
        v_out = free_out * keep[:, None] + feats @ self.out_meta + self.out_default
        bias = free_bias * keep + feats @ self.bias_meta + self.bias_default
        wide = free_wide * keep[None, :] + self.wide_meta @ feats.T
        return w_in, v_out, bias, wide

    def forward(
        self, x: torch.Tensor, centered: torch.Tensor | None, users: torch.Tensor, feats: torch.Tensor,
        keep: torch.Tensor, m: int,
    ) -> torch.Tensor:  # fmt: skip
        w_in, v_out, bias, wide = self.movie_vectors(feats, keep, m)
        rated = (x != 0).to(x.dtype)
        norm = (rated.sum(dim=1, keepdim=True) + self.count_prior).clamp(min=1.0).rsqrt()
        code = (rated * norm) @ w_in[0]
        if centered is not None:
            code = code + (centered * norm) @ w_in[1]
        code = self.act(code + users @ self.user_in + self.in_bias)
        h = self.act(self.hidden(self.dropout(code)))
        out = self.out_proj(h) @ v_out.T + bias
        return out + users @ wide if wide.shape[0] else out


class HybridAE(Recommender):
    """`networks` hybrid networks (`_Network`), trained side by side and averaged: with the few cold
    validation users a single network's fit varies a lot with its seed; the average varies less."""

    orientation = "user"
    sparse_input = False
    side_information = True
    trained_by = "side_gradient"
    rating_input = False  # whether the input carries centered rating values besides which movies were rated
    item_features: torch.Tensor  # buffer [n_items, n_item_features]: the trained movies' features
    movie_keep: torch.Tensor  # buffer [n_items]: 1, or 0 where training hides a movie's free vectors
    segment_columns: torch.Tensor  # buffer [n_segments]: the user-feature columns of the segments
    segment_prior: torch.Tensor  # buffer [n_segments + 1, n_items]: log P(movie | segment); last: overall
    prior_weight: torch.Tensor  # buffer []: the segment prior's weight (ranking models; 0 = off)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.settings = HybridSettings.parse(config.extra, f"model kind {config.kind!r}")
        s = self.settings
        if s.networks < 1:
            raise ValueError(f"model kind {config.kind!r}: networks must be >= 1, got {s.networks}")
        self.register_buffer("item_features", torch.zeros(config.n_items, s.n_item_features))
        self.register_buffer("movie_keep", torch.ones(config.n_items))  # training: 0 hides free vectors
        # Ranking models: a demographic prior added to the networks' log-probabilities (a product of
        # experts): log P(movie | the user's segment), counted on the training ratings and smoothed towards
        # the overall popularity; the last row is the overall popularity (no segment known). The trainer
        # fills it and picks its weight on the cold validation users (0 = off).
        self.register_buffer("segment_columns", torch.zeros(s.n_segments, dtype=torch.int64))
        self.register_buffer("segment_prior", torch.zeros(s.n_segments + 1, config.n_items))
        self.register_buffer("prior_weight", torch.tensor(float(s.prior_weight)))
        channels = 2 if self.rating_input else 1
        self.nets = nn.ModuleList(_Network(config, s, channels) for _ in range(s.networks))
        self.global_mean = s.global_mean  # inputs are centered on it; rating models predict offsets from it
        self.offset = s.global_mean if self.objective == "rating" else 0.0

    def member_scores(self, x: torch.Tensor, users: torch.Tensor, added: torch.Tensor) -> list[torch.Tensor]:
        """Each member network's output for `scores_side`'s arguments (training fits every member)."""
        feats, keep, m = self.item_features, self.movie_keep, int(added.shape[0])
        if m:  # added movies: no free vectors, metadata only
            feats = torch.cat([feats, added])
            keep = torch.cat([keep, keep.new_zeros(m)])
        centered = (x - self.global_mean) * (x != 0) if self.rating_input else None
        return [net(x, centered, users, feats, keep, m) + self.offset for net in self.nets]

    def combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The members' outputs as one: the mean prediction (rating) or the mean log-probability (ranking)."""
        if len(outputs) == 1:
            return outputs[0]
        if self.objective == "ranking":
            return torch.stack([torch.log_softmax(o, dim=1) for o in outputs]).mean(dim=0)
        return torch.stack(outputs).mean(dim=0)

    def scores_side(self, x: torch.Tensor, users: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
        out = self.combine(self.member_scores(x, users, added))
        if self.objective != "ranking" or float(self.prior_weight) == 0.0:
            return out
        weight = self.prior_weight
        if self.settings.prior_decay > 0:  # the more a user has rated, the less the demographics count
            c = self.settings.prior_decay
            weight = weight * c / (c + (x != 0).sum(dim=1, keepdim=True).to(out.dtype))
        return out + weight * self.prior(users, int(added.shape[0]))

    def prior(self, users: torch.Tensor, m: int) -> torch.Tensor:
        """The segment prior for each row [B, n_items + m]: the row of the user's segment (overall popularity
        when none is known). Movies added after training, whose popularity nobody knows yet, get the row's
        expected value over the movies the segment likes (sum of P log P): a typical liked movie, not a
        typical catalog movie. The catalog's mean log-share (most movies are rarely liked) sank new movies:
        on movies held out inside the training data (random and latest 10%, both report splits) the liked
        ones' percentile rank was 0.176 / 0.224 / 0.201 / 0.340 with the mean and 0.161 / 0.199 / 0.172 /
        0.197 with this (README, "Cold start")."""
        overall = torch.full((users.shape[0],), self.segment_columns.numel(), dtype=torch.int64, device=users.device)
        row = overall
        if self.segment_columns.numel():
            seg = users[:, self.segment_columns]
            row = torch.where(seg.sum(dim=1) > 0, seg.argmax(dim=1), overall)
        prior = self.segment_prior[row]
        if m:  # per segment row (a few), not per query row
            rows, share = self.segment_prior, self.segment_prior.exp()
            typical = (share * rows).sum(dim=1) / share.sum(dim=1).clamp(min=1e-30)
            prior = torch.cat([prior, typical[row, None].expand(-1, m)], dim=1)
        return prior

    def forward(self, x: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        if users is None:
            users = x.new_zeros(x.shape[0], self.settings.n_user_features)
        return self.scores_side(x, users, x.new_zeros(0, self.settings.n_item_features))


class HybridRating(HybridAE):
    """Predicted stars from ratings, profile and movie metadata (masked MSE)."""

    objective = "rating"
    rating_input = True

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class HybridRanking(HybridAE):
    """Top-N scores from rated movies, profile and movie metadata (multinomial likelihood)."""

    objective = "ranking"
    rating_input = True

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)
