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
    count_prior: float = 0.0  # inputs are scaled by 1 / sqrt(n_rated + count_prior): few ratings, small steps
    like_threshold: float = 0.0  # ranking models: > 0 = learn to rank the movies rated at least this high
    global_mean: float = 3.5  # rating models: predictions are offsets from it (filled by the trainer)


class HybridAE(Recommender):
    """The shared network; `HybridRating` and `HybridRanking` are the families."""

    orientation = "user"
    sparse_input = False
    side_information = True
    trained_by = "side_gradient"
    rating_input = False  # whether the input carries centered rating values besides which movies were rated
    item_features: torch.Tensor  # buffer [n_items, n_item_features]: the trained movies' features
    movie_keep: torch.Tensor  # buffer [n_items]: 1, or 0 where training hides a movie's free vectors

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.settings = HybridSettings.parse(config.extra, f"model kind {config.kind!r}")
        s = self.settings
        n, d, nf, nu = config.n_items, s.dim, s.n_item_features, s.n_user_features
        hidden = config.hidden[0] if config.hidden else d
        self.register_buffer("item_features", torch.zeros(n, nf))
        self.register_buffer("movie_keep", torch.ones(n))  # training: 0 hides a movie's free vectors
        channels = 2 if self.rating_input else 1
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
        self.act = activation(config.activation)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.global_mean = s.global_mean  # inputs are centered on it; rating models predict offsets from it
        self.offset = s.global_mean if self.objective == "rating" else 0.0

    # -- movie vectors ---------------------------------------------------------------------------------
    def _movie_vectors(
        self, added: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input weights [channels, n + m, d], output vectors [n + m, d], biases [n + m])."""
        keep = self.movie_keep
        feats = self.item_features
        m = 0 if added is None else int(added.shape[0])
        free_in: torch.Tensor = self.in_free
        free_out: torch.Tensor = self.out_free
        free_bias: torch.Tensor = self.bias_free
        if m:  # added movies: no free vectors, metadata only
            assert added is not None
            feats = torch.cat([feats, added])
            keep = torch.cat([keep, keep.new_zeros(m)])
            c, _, d = free_in.shape
            free_in = torch.cat([free_in, free_in.new_zeros(c, m, d)], dim=1)
            free_out = torch.cat([free_out, free_out.new_zeros(m, d)])
            free_bias = torch.cat([free_bias, free_bias.new_zeros(m)])
        w_in = free_in * keep[None, :, None] + torch.einsum("nf,cfd->cnd", feats, self.in_meta)
        v_out = free_out * keep[:, None] + feats @ self.out_meta + self.out_default
        bias = free_bias * keep + feats @ self.bias_meta + self.bias_default
        return w_in, v_out, bias

    def _encode_input(self, x: torch.Tensor, w_in: torch.Tensor) -> torch.Tensor:
        rated = (x != 0).to(x.dtype)
        norm = (rated.sum(dim=1, keepdim=True) + self.settings.count_prior).clamp(min=1.0).rsqrt()
        code = (rated * norm) @ w_in[0]
        if self.rating_input:
            centered = (x - self.global_mean) * rated * norm
            code = code + centered @ w_in[1]
        return code

    def scores_side(self, x: torch.Tensor, users: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
        w_in, v_out, bias = self._movie_vectors(added)
        code = self.act(self._encode_input(x, w_in) + users @ self.user_in + self.in_bias)
        h = self.act(self.hidden(self.dropout(code)))
        return self.out_proj(h) @ v_out.T + bias + self.offset

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
