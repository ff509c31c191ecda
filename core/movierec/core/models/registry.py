"""Model families by `ModelConfig.kind`: one table, and what the rest of the system reads from it.

Adding a family: its module in this package (a `Recommender` subclass declaring its traits), one line in
`FAMILIES`, and a preset in `movierec.trainer.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from movierec.core.config import ModelConfig
from movierec.core.models.autoencoder import Autoencoder
from movierec.core.models.base import Objective, Recommender
from movierec.core.models.bpmf import BPMF
from movierec.core.models.ease import EASE
from movierec.core.models.ensemble import Ensemble
from movierec.core.models.hybrid import HybridRanking, HybridRating
from movierec.core.models.iautorec import IAutoRec
from movierec.core.models.knn_baseline import KNNBaseline
from movierec.core.models.multvae import MultVAE
from movierec.core.models.popularity import Popularity


@dataclass(frozen=True)
class Family:
    """A model family: the class built for its kind and the config type it is built from."""

    model: type[Recommender]
    config: type[ModelConfig] = ModelConfig


FAMILIES: dict[str, Family] = {
    "autoencoder": Family(Autoencoder),
    "iautorec": Family(IAutoRec),
    "multvae": Family(MultVAE),
    "ease": Family(EASE),
    "popular": Family(Popularity),
    "ensemble": Family(Ensemble),
    "knn-baseline": Family(KNNBaseline),
    "bpmf": Family(BPMF),
    "hybrid-rating": Family(HybridRating),
    "hybrid-ranking": Family(HybridRanking),
}


def family(kind: str) -> Family:
    try:
        return FAMILIES[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; choose one of: {', '.join(FAMILIES)}") from None


def model_class(kind: str) -> type[Recommender]:
    return family(kind).model


def build_model(config: ModelConfig) -> Recommender:
    return family(config.kind).model(config)


def model_objective(kind: str) -> Objective:
    """What a model kind is trained for (and so which artifact role it fills)."""
    return model_class(kind).objective


def member_needs_users(config: ModelConfig) -> bool:
    """Whether a model (or any member of an ensemble) is item-based and so needs extra['n_users']."""
    if model_class(config.kind).orientation == "item":
        return True
    return any(
        model_class(m["model"].get("kind", "autoencoder")).orientation == "item"
        for m in config.extra.get("members", [])
    )
