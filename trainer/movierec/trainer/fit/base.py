"""The trainer interface: one `Trainer` per way of training (a model's `trained_by` trait picks it)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from movierec.core.models import Recommender
from movierec.core.sparse import Csr
from movierec.trainer.checkpoint import CheckpointSpec
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.fit.common import EpochStats, FitResult

if TYPE_CHECKING:
    from movierec.trainer.fit.side import SideData


@dataclass(frozen=True)
class FitOptions:
    """How a fit reports and persists: progress bars, a per-epoch callback, checkpoints."""

    progress: bool = True
    on_epoch: Callable[[EpochStats], None] | None = None
    checkpoint: CheckpointSpec | None = None


@dataclass(frozen=True)
class FitRun:
    """One fit: the freshly built, seeded model and what it is fitted on."""

    model: Recommender
    model_config: ModelConfig
    train: Csr  # users x items
    valid: Csr | None  # held-out ratings for model selection (None: no validation)
    train_config: TrainConfig
    device: torch.device
    generator: torch.Generator  # seeded with train_config.seed; the gradient trainer shuffles with it
    side: SideData | None = None  # user and movie features (side-information models only)


class Trainer(ABC):
    @abstractmethod
    def fit(self, run: FitRun, options: FitOptions) -> FitResult:
        """Fit `run.model` in place, choosing epochs / hyperparameters on `run.valid`."""

    @abstractmethod
    def finalize(self, model: Recommender, full: Csr, train_config: TrainConfig) -> None:
        """Once fitted, before saving: bring the model's serving state up to every training rating `full`
        (closed-form weights solved on all of it, I-AutoRec's codes, ...). No test data."""
