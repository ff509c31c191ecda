"""Trainers by the way a model family is trained (its `trained_by` trait), and `fit`, the one entry point."""

from __future__ import annotations

from collections.abc import Callable

import torch

from movierec.core.device import resolve_device
from movierec.core.models import Recommender, TrainedBy, build_model
from movierec.core.sparse import Csr
from movierec.trainer import memory
from movierec.trainer.checkpoint import CheckpointSpec
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.fit.base import FitOptions, FitRun, Trainer
from movierec.trainer.fit.closed_form import ClosedFormTrainer
from movierec.trainer.fit.common import EpochStats, FitResult
from movierec.trainer.fit.ensemble import EnsembleTrainer
from movierec.trainer.fit.gradient import GradientTrainer
from movierec.trainer.fit.sampler import SamplerTrainer
from movierec.trainer.fit.side import SideData, SideTrainer


def fit(
    train: Csr,
    valid: Csr | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
    checkpoint: CheckpointSpec | None = None,
    side: SideData | None = None,
) -> FitResult:
    """Build the model of `model_config` (seeded by `train_config.seed`) and fit it on `train` (users x items)
    with the trainer of its family; `valid` (same shape) holds held-out ratings for model selection.
    `checkpoint`: the gradient trainer writes one every epoch and, with `resume`, continues from it.
    `side`: user and movie features, for side-information models (cold start)."""
    train_config.validate()
    if model_config.kind != "ensemble":  # (an ensemble's members are checked one by one as they start)
        need, option = memory.stage_bytes(model_config, train_config, memory.Shape(train.n_rows, train.n_cols, train.nnz))
        memory.check(f"training {model_config.kind} ({train.n_rows} users x {train.n_cols} movies)", need, option)
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    generator = torch.Generator().manual_seed(train_config.seed)
    model = build_model(model_config).to(device)
    use_valid = valid is not None and valid.nnz > 0
    run = FitRun(model, model_config, train, valid if use_valid else None, train_config, device, generator, side)
    return trainer_for(model).fit(run, FitOptions(progress, on_epoch, checkpoint))


def _fit_member(
    train: Csr,
    valid: Csr | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: bool,
    checkpoint: CheckpointSpec | None,
) -> FitResult:
    return fit(train, valid, model_config, train_config, progress=progress, checkpoint=checkpoint)


def trainer_for(model: Recommender) -> Trainer:
    return TRAINERS[model.trained_by]


_GRADIENT = GradientTrainer()
TRAINERS: dict[TrainedBy, Trainer] = {
    "gradient": _GRADIENT,
    "closed_form": ClosedFormTrainer(),
    "sampler": SamplerTrainer(),
    "ensemble": EnsembleTrainer(_fit_member, trainer_for, _GRADIENT),
    "side_gradient": SideTrainer(),
}


def finalize(model: Recommender, full: Csr, train_config: TrainConfig) -> None:
    """Bring a fitted model's serving state up to every training rating `full` before it is saved."""
    trainer_for(model).finalize(model, full, train_config)
