"""Recommender models as torch modules built from a `ModelConfig`, one module per family. No I/O here.

`base.Recommender` is the interface (traits + `scores`); `registry` maps `ModelConfig.kind` to a family.
"""

from movierec.core.models.autoencoder import Autoencoder
from movierec.core.models.base import (
    SPARSE_INPUT_DENSITY,
    Objective,
    Orientation,
    Recommender,
    TrainedBy,
    count_parameters,
)
from movierec.core.models.bpmf import BPMF
from movierec.core.models.ease import EASE
from movierec.core.models.ensemble import Ensemble
from movierec.core.models.iautorec import IAutoRec
from movierec.core.models.knn_baseline import KNNBaseline
from movierec.core.models.multvae import MultVAE
from movierec.core.models.popularity import Popularity
from movierec.core.models.registry import (
    FAMILIES,
    Family,
    build_model,
    family,
    member_needs_users,
    model_class,
    model_objective,
)

__all__ = [
    "BPMF",
    "EASE",
    "FAMILIES",
    "SPARSE_INPUT_DENSITY",
    "Autoencoder",
    "Ensemble",
    "Family",
    "IAutoRec",
    "KNNBaseline",
    "MultVAE",
    "Objective",
    "Orientation",
    "Popularity",
    "Recommender",
    "TrainedBy",
    "build_model",
    "count_parameters",
    "family",
    "member_needs_users",
    "model_class",
    "model_objective",
]
