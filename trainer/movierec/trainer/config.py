"""Typed configuration: what a model is (ModelConfig), how it is trained (TrainConfig), named presets.

Configs are frozen dataclasses that round-trip through plain JSON (`to_dict` / `from_dict`), so the artifact
carries the exact configuration it was built from and nothing is pickled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from movierec.core.config import FamilySettings, ModelConfig, from_json_dict


@dataclass(frozen=True)
class TrainSettings(FamilySettings):
    """Training settings beyond `TrainConfig`'s fields, stored as its `extra`: the L2 penalty on weight matrices,
    the switch to other settings on large data, and a time budget."""

    l2: float = 0.0
    # On a rating matrix of more than `large_above` cells (users x movies), train with `large` instead: TrainConfig
    # fields (and "extra") that replace this config's, e.g. mini-batches where small data trains full-batch.
    large_above: int = 0
    large: dict[str, Any] = field(default_factory=dict)
    # > 0: stop once past this many seconds of training (mid-epoch on one process, after the epoch under
    # --nproc; the best epoch so far is kept, as when early stopping stops); 0: no budget.
    max_seconds: float = 0.0
    # False: `finalize` does not re-run a sampler or closed-form solve on every training rating (the fit's serve)
    finalize_full: bool = True
    # A second tier on top of `large`, above `huge_above` cells (e.g. ml-25m's 9.6e9; ml-10m has 7.5e8): the same
    # kind of replacements. Both tiers may also hold "model_extra" (model settings replaced at that size, e.g.
    # BPMF's chain length) and "skip": true (an ensemble member left out of the blend at that size).
    huge_above: int = 0
    huge: dict[str, Any] = field(default_factory=dict)
    # > 0: model selection sees at most this many validation users (a seeded sample; their other ratings still
    # train nothing: they stay held out). Validation scoring grows with users while its verdict does not.
    valid_users: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """How a model is fitted. Every choice is made on a validation split carved from the training data."""

    epochs: int = 200
    batch_size: int = 32
    optimizer: Literal["rmsprop", "adam", "adamw", "rprop", "sgd"] = "rmsprop"
    lr: float = 0.01
    weight_decay: float = 0.0
    loss: str = "masked_mse"
    valid_fraction: float = 0.1  # per-user holdout carved from the training file for early stopping
    patience: int = 20  # epochs without validation improvement before stopping; 0 disables early stopping
    seed: int = 0
    device: str = "auto"
    dense_refeed: bool = False  # Kuchaiev & Ginsburg 2017: a second step on the model's own output
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_json_dict(cls, data)

    @property
    def settings(self) -> TrainSettings:
        return TrainSettings.parse(self.extra, "training")

    def _tiers(self, n_rows: int, n_cols: int) -> list[dict[str, Any]]:
        """The size tiers (`large`, then `huge`) that apply to a rating matrix of n_rows x n_cols."""
        s, cells = self.settings, n_rows * n_cols
        return [dict(t) for above, t in ((s.large_above, s.large), (s.huge_above, s.huge)) if t and above and cells > above]

    def for_shape(self, n_rows: int, n_cols: int) -> TrainConfig:
        """This config for a rating matrix of n_rows x n_cols: its `large` settings above `large_above` cells,
        then its `huge` settings above `huge_above`."""
        tiers = self._tiers(n_rows, n_cols)
        if not tiers:
            return self
        extra = {k: v for k, v in self.extra.items() if k not in _TIER_KEYS}
        fields: dict[str, Any] = {}
        for tier in tiers:
            for key in ("model_extra", "skip"):
                tier.pop(key, None)
            extra.update(tier.pop("extra", {}))
            fields.update(tier)
        return TrainConfig.from_dict({**self.to_dict(), **fields, "extra": extra})

    def model_extra_for_shape(self, n_rows: int, n_cols: int) -> tuple[dict[str, Any], bool]:
        """(model settings replaced at this size, whether an ensemble member is left out at this size)."""
        extra: dict[str, Any] = {}
        skip = False
        for tier in self._tiers(n_rows, n_cols):
            extra.update(tier.get("model_extra", {}))
            skip = skip or bool(tier.get("skip", False))
        return extra, skip

    def validate(self) -> None:
        self.settings  # noqa: B018  (unknown or mistyped extra settings fail here)
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")


_TIER_KEYS = ("large", "large_above", "huge", "huge_above")


def model_for_shape(model: ModelConfig, train: TrainConfig, n_rows: int, n_cols: int) -> tuple[ModelConfig, list[str]]:
    """`model` as trained on a rating matrix of n_rows x n_cols: each tier's "model_extra" applied (an ensemble's
    to each member, by the member's own training settings) and the ensemble members whose tier says "skip"
    left out. Returns (the config, descriptions of the members left out); small data gets `model` itself."""
    if model.kind != "ensemble":
        extra, _skip = train.model_extra_for_shape(n_rows, n_cols)
        return (dataclasses.replace(model, extra={**model.extra, **extra}) if extra else model), []
    members, skipped = [], []
    for i, m in enumerate(model.extra.get("members", []), start=1):
        mtrain = TrainConfig.from_dict(m["train"])
        extra, skip = mtrain.model_extra_for_shape(n_rows, n_cols)
        if skip:
            skipped.append(f"member {i} ({m['model'].get('kind', 'autoencoder')})")
            continue
        if extra:
            m = {**m, "model": {**m["model"], "extra": {**m["model"].get("extra", {}), **extra}}}
        members.append(m)
    if not skipped and members == model.extra.get("members", []):
        return model, []
    if not members:
        raise ValueError(f"every member of the ensemble is left out at {n_rows} x {n_cols} (their 'skip' tiers)")
    return dataclasses.replace(model, extra={**model.extra, "members": members}), skipped


@dataclass(frozen=True)
class Preset:
    """A named (model, training) pair, optionally with a second (ranking) model trained alongside.

    `n_items` is filled in from the data at training time. The main model fills the artifact role its kind
    is trained for ("rating" for rating autoencoders, "ranking" for top-N models); `ranking_model` /
    `ranking_train`, when set, add a "ranking" model so the artifact answers `predict` with the rating model
    and `Recommend` with the ranking model.
    """

    name: str
    description: str
    model: ModelConfig
    train: TrainConfig
    ranking_model: ModelConfig | None = None
    ranking_train: TrainConfig | None = None
    # Cold-start models trained beside the others: (artifact role, model, training), e.g. "cold-ranking"
    side_models: tuple[tuple[str, ModelConfig, TrainConfig], ...] = ()


# The classic stacked autoencoder (the SuperDataScience notebook): nb_movies -> 20 -> 10 -> 20 -> nb_movies,
# sigmoid hidden layers, linear output, MSE on rated movies only, RMSprop, 200 epochs. The notebook's
# lr=0.01 / weight_decay=0.5 only works because its loop never calls zero_grad (gradients pile up across
# every step); with a correct mini-batch loop those settings collapse, so lr and weight decay here were
# chosen on a validation split of u1.base (see README, "The classic preset").
CLASSIC = Preset(
    name="classic",
    description="Stacked autoencoder 20-10-20, sigmoid, masked MSE, RMSprop (the classic notebook, trained correctly)",
    model=ModelConfig(hidden=(20, 10, 20), activation="sigmoid", output_activation="identity"),
    train=TrainConfig(epochs=200, batch_size=32, optimizer="rmsprop", lr=0.003, weight_decay=1e-4),
)

# Every hyperparameter below was chosen on the validation split carved from u1.base (10% of each user's
# ratings); the test file only reports (docs/results.md). Epochs are picked by early stopping on that split.

# I-AutoRec (Sedhain et al. 2015): item-based, users -> 500 sigmoid -> users, masked MSE plus L2 on the
# weights, trained full-batch with Rprop as in the paper (on u1's validation split: Rprop full-batch 0.888
# vs Adam mini-batch 0.895; l2 3e-3 vs 1e-3 / 1e-2: 0.888 / 0.892 / 0.924).
# Above 4M cells (ml-100k has 1.6M, the ml-1m shape 22M), full-batch Rprop costs a pass over the dense
# movies x users matrix per step for ~300 steps (~9 min on the ml-1m shape): it trains in mini-batches of
# movies with Adam instead, early-stops sooner and the ensemble's full-batch refit is skipped (README,
# "Scaling out: training").
# Every gradient-trained model also gets a training time budget on large data (max_seconds: it stops after the
# first epoch past it, keeping its best epoch), so a preset's time is bounded by its data, not by how slowly
# validation stops improving; below the threshold nothing changes.
LARGE_ABOVE = 4_000_000
MEMBER_SECONDS = 120.0
# Above HUGE_ABOVE cells (the ml-10m shape has 7.5e8, ml-25m 9.6e9; ml-1m 2.2e7) the Gibbs chains are short and
# BPMF drops its implicit part (an n_items^2 eigendecomposition and a dense users x movies product), and the
# kNN-baseline is not solved a second time on every rating. Above SKIP_ABOVE (ml-25m, ml-20m) the dense-layer
# members (I-AutoRec, the deep autoencoder) are left out of the blend: each pass over users x movies through a
# 59,047-wide layer is ~5e12 multiply-adds, so they could not train for more than a sliver of an epoch inside
# the hour (README, "Scaling out: training"); the blend of the other members serves and the manifest says so.
HUGE_ABOVE = 200_000_000
SKIP_ABOVE = 2_000_000_000
# model selection on at most this many validation users (a seeded sample) on large data
VALID_USERS = 20_000
# I-AutoRec's l2 is in mean-loss units (the data term is a mean over the batch's ratings, the L2 term is not), so
# the weight tuned on ml-100k's ~80,000 ratings over-regularizes 10x more ratings: on the ml-1m shape it stopped
# after 7 epochs at validation RMSE 1.159 with 3e-3, and reached 0.736 in 46 epochs with 3e-4 (Adam, lr 1e-3;
# lr 3e-3 and 3e-4 with 3e-3 stayed at 1.14-1.18).
IAUTOREC_LARGE = {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "patience": 10,
                  "extra": {"l2": 3e-4, "max_seconds": MEMBER_SECONDS / 2}}
IAUTOREC_LARGE_ABOVE = LARGE_ABOVE
IAUTOREC = Preset(
    name="iautorec",
    description="I-AutoRec: item-based autoencoder, 500 sigmoid units, masked MSE + L2, full-batch Rprop (rating model)",
    model=ModelConfig(
        kind="iautorec", hidden=(500,), activation="sigmoid", output_activation="identity",
        extra={"fold_in_l2": 100.0},
    ),
    train=TrainConfig(
        epochs=300, batch_size=4096, optimizer="rprop", lr=0.01, patience=10,
        extra={"l2": 3e-3, "large_above": IAUTOREC_LARGE_ABOVE, "large": IAUTOREC_LARGE,
               "huge_above": SKIP_ABOVE, "huge": {"skip": True}},
    ),
)

# Deep user autoencoder (Kuchaiev & Ginsburg 2017): SELU, large dropout on the code, dense re-feeding.
DEEP_AE = Preset(
    name="deep-ae",
    description="Deep user autoencoder 256-128-256, SELU, code dropout 0.5, dense re-feeding (rating model)",
    model=ModelConfig(hidden=(256, 128, 256), activation="selu", output_activation="identity", dropout=0.5),
    train=TrainConfig(
        epochs=200, batch_size=64, optimizer="adam", lr=6e-4, patience=15, dense_refeed=True,
        extra={"l2": 1e-3, "large_above": LARGE_ABOVE,
               "large": {"batch_size": 256, "lr": 1e-3, "patience": 5, "extra": {"max_seconds": MEMBER_SECONDS / 2}},
               "huge_above": SKIP_ABOVE, "huge": {"skip": True}},
    ),
)

# Denoising user autoencoder: a quarter of the observed inputs dropped during training.
DAE = Preset(
    name="dae",
    description="Denoising user autoencoder 500 sigmoid, input dropout 0.25, masked MSE (rating model)",
    model=ModelConfig(hidden=(500,), activation="sigmoid", output_activation="identity", input_dropout=0.25),
    train=TrainConfig(epochs=200, batch_size=32, optimizer="adam", lr=3e-4, weight_decay=1e-5, patience=15),
)

# Mult-DAE / Mult-VAE (Liang et al. 2018): top-N from implicit feedback, multinomial likelihood.
MULT_DAE = Preset(
    name="mult-dae",
    description="Mult-DAE: binary input, dropout 0.5, 600-200 tanh, multinomial likelihood (ranking model)",
    model=ModelConfig(
        kind="multvae", hidden=(600, 200), activation="tanh", input_dropout=0.5, extra={"variational": False}
    ),
    train=TrainConfig(
        epochs=200, batch_size=128, optimizer="adam", lr=1e-3, weight_decay=1e-5, loss="multinomial", patience=10
    ),
)
MULT_VAE = Preset(
    name="mult-vae",
    description="Mult-VAE: as Mult-DAE, variational with KL annealed to 0.2 (ranking model)",
    model=ModelConfig(
        kind="multvae",
        hidden=(600, 200),
        activation="tanh",
        input_dropout=0.5,
        extra={"variational": True, "beta_max": 0.2, "anneal_steps": 1000},
    ),
    train=TrainConfig(epochs=200, batch_size=128, optimizer="adam", lr=1e-3, loss="multinomial", patience=10),
)

_L2_GRID = [100.0, 200.0, 350.0, 500.0, 800.0]
# EASE is exact up to 6,000 movies (ml-100k, ml-1m); above, it is solved over the 6,000 most rated movies and
# the others are ranked below them by popularity (README, "Scaling out: training"): a 6,000^2 float64 Gram
# matrix and its inverse are 0.3 GB each and one solve takes ~17 s on 2 cores, where ml-25m's 59,047 movies
# would need 28 GB each and hours. On synthetic data, EASE over 75% of the movies keeps >= 8 of the exact
# top 10 for 99.5% of users (tests/unit/test_models_ease_pruned.py).
EASE_MAX_ITEMS = 6000

# EASE (Steck 2019) as published: predicts which movies a user rates. A reference for top-N.
EASE = Preset(
    name="ease",
    description="EASE closed form on binary 'rated' data, l2 picked on validation (ranking reference)",
    model=ModelConfig(kind="ease", extra={"target": "rated", "l2_grid": _L2_GRID, "max_items": EASE_MAX_ITEMS}),
    train=TrainConfig(epochs=1, extra={"large_above": LARGE_ABOVE, "large": {"extra": {"valid_users": VALID_USERS}}}),
)

# EASE trained to predict *liked* movies from the rated ones: ranks what users will rate highly. The "liked"
# threshold (3 or 4 stars) and l2 are picked on the validation split (u1: 3 stars, l2 350; validation NDCG@10
# 0.2234 vs 0.2210 at 4 stars and 0.2188 for plain EASE).
EASE_LIKED = Preset(
    name="ease-liked",
    description="EASE closed form, input = rated movies, target = liked movies (rating >= 3 or 4, picked on validation) (ranking model)",
    model=ModelConfig(
        kind="ease",
        extra={"target": "liked", "like_threshold": 4.0, "l2_grid": _L2_GRID, "like_threshold_grid": [3.0, 4.0],
               "max_items": EASE_MAX_ITEMS},
    ),
    train=TrainConfig(epochs=1, extra={"large_above": LARGE_ABOVE, "large": {"extra": {"valid_users": VALID_USERS}}}),
)

POPULAR = Preset(
    name="popular",
    description="Most popular movies the user has not rated (ranking reference)",
    model=ModelConfig(kind="popular"),
    train=TrainConfig(epochs=1),
)

# A least-squares blend (weights fitted on the validation split) of I-AutoRec and the deep user autoencoder:
# item- and user-based models err differently (validation RMSE 0.890 / 0.932 alone, 0.884 blended).
# refit_full: once the blend weights and I-AutoRec's step count are chosen on the validation split, I-AutoRec
# is retrained from scratch on every training rating for that many full-batch steps (~9 s more). Chosen with a
# second holdout carved from u1.base (10% per user, seed 99; the preset trained on the rest): RMSE there 0.8832
# without, 0.8797 with the refit. A second I-AutoRec seed as a third member: 0.8829 (0.8792 with refit) at
# +15 s, not kept. I-AutoRec's L2 inside the refit ensemble, on the same holdout: 1.5e-3 / 2e-3 / 3e-3 / 5e-3
# give 0.8800 / 0.8783 / 0.8797 / 0.8900 (2e-3 kept; the stand-alone preset keeps 3e-3, chosen on validation).
# A two-layer I-AutoRec encoder (500-500, same L2): 0.9089, not kept.
# kNN-baseline (Koren 2008): item-item neighbourhood on the residuals of a ridge bias baseline, closed form in
# ~1 s. Weak alone (validation 0.93) but it errs unlike both autoencoders. As a third member, u1 validation
# 0.8811 -> 0.8778 and the second u1.base holdout (run_training, as above) 0.8783 -> 0.8765. Neighbours
# 30 / 50 / 80, shrink 25-300 and l2 0.01-1 all give 0.8778-0.8809 on validation (50 / 200 / 0.01 kept).
# Not kept, in a harness blending cached member predictions (two members: holdout 0.8803, + this kNN: 0.8780):
# biased ALS matrix factorization (third member 0.8792; fourth next to the kNN 0.8780), a user-user kNN twin
# (validation 0.8780 with the item kNN), ridge regression of residuals on all other movies (validation
# 0.8808), blend weights per user-activity bucket (validation 0.8772 in-sample, holdout 0.8795-0.8801).
# Above 6,000 movies (or 50M users x movies cells) its similarities are computed by sparse products over the
# 6,000 most rated movies; the others are predicted by the baseline (README, "Scaling out: training").
KNN_BASELINE = ModelConfig(
    kind="knn-baseline", extra={"neighbors": 50, "shrink": 200.0, "l2": 0.01, "max_items": EASE_MAX_ITEMS}
)

# BPMF (Salakhutdinov & Mnih 2008): Bayesian matrix factorization by Gibbs sampling, 50 burn-in sweeps and 100
# kept (~2 s). Chosen on u1's validation split (alone): noise precision alpha 1.25 / 1.5 / 1.75 / 2 / 3 give
# 0.894 / 0.893 / 0.900 / 0.908 / 0.942 (alpha 2 is the paper's Netflix value); dim 5 / 10 / 15 / 20 at alpha 1.5:
# 0.898 / 0.893 / 0.894 / 0.894 (dim 30 at alpha 2: 0.902, 8x slower). As a fourth ensemble member (harness
# blending cached member predictions): validation 0.8778 -> 0.8759, second u1.base holdout 0.8780 -> 0.8771;
# dims 5-20 and alpha 1.25-1.75 all land within 0.8759-0.8768 / 0.8765-0.8775. Through run_training: validation
# 0.8778 -> 0.8759, holdout 0.8765 -> 0.8763. Not kept: BPMF on ridge-bias residuals (validation 0.8775), a
# second BPMF as a fifth member (0.8758-0.8759 / holdout 0.8765-0.8772), a movie-genre member (0.8757-0.8759 /
# 0.8773-0.8775). Per-user noise precisions (noise_prior a0: Gamma prior with mean alpha, see model.BPMF), as the
# fourth member in the harness, validation / holdout: a0 3 / 10 / 30 / 100 give 0.8762 / 0.8760 / 0.8757 / 0.8760
# and 0.8757 / 0.8756 / 0.8759 / 0.8761 vs 0.8759 / 0.8771 with one shared precision (alone on validation 0.890 vs
# 0.894; +2 s); 30 kept (best on validation). Through run_training: validation 0.8759 -> 0.8757, holdout
# 0.8763 -> 0.8752. Implicit feedback (implicit: SVD++-style implicit movie factors in each user's prior mean,
# |N(u)|^-0.5 sum over the movies the user rated; see model.BPMF), as the fourth member in the harness, replacing
# the BPMF above, validation / holdout: 0.8757 / 0.8759 -> 0.8748 / 0.8738 (seeds 1 and 2: 0.8759-0.8760 /
# 0.8760-0.8761 -> 0.8742-0.8744 / 0.8736-0.8740; alone on validation 0.890 -> 0.888; +2 s); implicit_power
# 0.25 / 0.5 / 1: 0.8748 / 0.8748 / 0.8757 on validation and 0.8738 / 0.8738 / 0.8757 on the holdout (0.5, SVD++'s
# normalization, kept); dim 15: 0.8745 / 0.8741; alpha 1.75: 0.8748 / 0.8746.
BPMF = Preset(
    name="bpmf",
    description="Bayesian matrix factorization (BPMF), 10 factors, per-user noise precisions, implicit movie factors in the user prior, Gibbs sampling, 100 kept samples (rating model)",
    model=ModelConfig(
        kind="bpmf",
        extra={"dim": 10, "alpha": 1.5, "burn_in": 50, "samples": 100, "noise_prior": 30.0, "implicit": True},
    ),
    # above 4M cells the Gibbs chain is not run a second time on every training rating in `finalize` (it was
    # ~50 s of the ml-1m shape's run): the samples drawn on the fitting split serve, as validation saw them
    # above HUGE_ABOVE cells: no implicit part (its n_items^2 eigendecomposition: hours at ml-25m's 59,047 movies),
    # 10 burn-in sweeps and 20 kept samples (each sweep ~10 s at the ml-25m shape)
    train=TrainConfig(epochs=1, extra={
        "large_above": LARGE_ABOVE, "large": {"extra": {"finalize_full": False}},
        "huge_above": HUGE_ABOVE, "huge": {"model_extra": {"implicit": False, "burn_in": 10, "samples": 20}}}),
)
# the kNN-baseline member: above HUGE_ABOVE its similarities from the fitting split serve (no second solve)
KNN_TRAIN = TrainConfig(epochs=1, extra={"huge_above": HUGE_ABOVE, "huge": {"extra": {"finalize_full": False}}})

ENSEMBLE = Preset(
    name="ensemble",
    description="Blend of I-AutoRec, the deep user autoencoder, an item kNN-baseline and BPMF, weights fitted on validation, I-AutoRec then refit on all training ratings (rating model)",
    model=ModelConfig(
        kind="ensemble",
        extra={
            "members": [
                {"model": IAUTOREC.model.to_dict(), "train": {**IAUTOREC.train.to_dict(), "extra": {**IAUTOREC.train.extra, "l2": 2e-3}}},
                {"model": DEEP_AE.model.to_dict(), "train": DEEP_AE.train.to_dict()},
                {"model": KNN_BASELINE.to_dict(), "train": KNN_TRAIN.to_dict()},
                {"model": BPMF.model.to_dict(), "train": BPMF.train.to_dict()},
            ],
            "refit_full": True,
        },
    ),
    # epochs: an upper bound on the members' epochs; each member early-stops itself
    train=TrainConfig(epochs=1000, extra={"large_above": LARGE_ABOVE, "large": {"extra": {"valid_users": VALID_USERS}}}),
)

# Cold start (README, "Cold start"): hybrid autoencoders that read user profiles and movie metadata besides
# ratings, trained DropoutNet-style (movierec.trainer.fit.side); model selection on cold validation users.
COLD_VALID_USERS = 2_000  # cold validation users (x 3 reveal counts) on large data; ml-100k has ~75, ml-1m ~600
SIDE_TRAIN = TrainConfig(
    epochs=200, batch_size=128, optimizer="adam", lr=1e-3, patience=30,
    extra={"large_above": LARGE_ABOVE,
           "large": {"batch_size": 256, "patience": 10,
                     "extra": {"max_seconds": MEMBER_SECONDS / 4, "valid_users": COLD_VALID_USERS}}},
)
COLD_RATING = ModelConfig(kind="hybrid-rating", hidden=(128,), activation="tanh", extra={"dim": 64, "count_prior": 30.0})
COLD_RANKING = ModelConfig(
    kind="hybrid-ranking", hidden=(128,), activation="tanh",
    extra={"dim": 64, "count_prior": 30.0, "like_threshold": 4.0, "networks": 3, "prior_decay": 10.0},
)
COLD_START: tuple[tuple[str, ModelConfig, TrainConfig], ...] = (
    ("cold-rating", COLD_RATING, SIDE_TRAIN),
    ("cold-ranking", COLD_RANKING, SIDE_TRAIN),
)

# The default: the best rating model answers Predict, the best ranking model answers Recommend, the hybrid
# models answer new users (profiles) and new movies (metadata).
BEST = Preset(
    name="best",
    description="I-AutoRec + deep AE + kNN-baseline + BPMF blend (I-AutoRec refit on all training ratings) for ratings, EASE-liked for recommendations, hybrid autoencoders for new users and movies (the default)",
    model=ENSEMBLE.model,
    train=ENSEMBLE.train,
    ranking_model=EASE_LIKED.model,
    ranking_train=EASE_LIKED.train,
    side_models=COLD_START,
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (BEST, CLASSIC, IAUTOREC, ENSEMBLE, BPMF, DEEP_AE, DAE, MULT_DAE, MULT_VAE, EASE_LIKED, EASE, POPULAR)
}
DEFAULT_PRESET = "best"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None
