"""The fit entry point and what callers read from a fit; the trainers live in `movierec.trainer.fit`.

Ratings stay sparse (`Csr`); each batch of rows is densified on its own, so memory is O(batch x n_items).
The test file never enters here: model selection uses only the validation split carved from training data.
"""

from __future__ import annotations

from movierec.trainer.fit.common import (
    RELEVANT_MIN_RATING,
    VALID_K,
    EpochStats,
    FitResult,
    pooled_rmse,
    predict_pairs,
    validation_ndcg,
)
from movierec.trainer.fit.registry import finalize, fit

__all__ = [
    "RELEVANT_MIN_RATING",
    "VALID_K",
    "EpochStats",
    "FitResult",
    "finalize",
    "fit",
    "pooled_rmse",
    "predict_pairs",
    "validation_ndcg",
]
