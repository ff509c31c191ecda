"""Training an ensemble: fit every member with its own trainer, blend weights by least squares on the
validation ratings, and (refit_full) retrain refittable members on every training rating."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch

from movierec.core.artifact import RatingScale
from movierec.core.device import resolve_device
from movierec.core.models import Ensemble, Recommender
from movierec.core.sparse import Csr
from movierec.trainer.checkpoint import CheckpointSpec
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.fit.base import FitOptions, FitRun, Trainer
from movierec.trainer.fit.common import FitResult, predict_pairs
from movierec.trainer.fit.gradient import GradientTrainer

# (train, valid, member config, member train config, progress, checkpoint) -> the fitted member
FitMember = Callable[[Csr, Csr | None, ModelConfig, TrainConfig, bool, CheckpointSpec | None], FitResult]
TrainerFor = Callable[[Recommender], Trainer]


class EnsembleTrainer(Trainer):
    """`fit_member` fits one member from its configs (seeded and built as any model is), `trainer_for` gives a
    member's trainer (for `finalize`): both come from the trainer registry."""

    def __init__(self, fit_member: FitMember, trainer_for: TrainerFor, gradient: GradientTrainer) -> None:
        self._fit_member = fit_member
        self._trainer_for = trainer_for
        self._gradient = gradient

    def fit(self, run: FitRun, options: FitOptions) -> FitResult:
        start = time.perf_counter()
        model = _ensemble(run.model)
        train, train_config, checkpoint = run.train, run.train_config, options.checkpoint
        valid = run.valid if run.valid is not None and run.valid.nnz > 0 else None
        result = FitResult(model=model, device=str(train_config.device))
        preds: list[np.ndarray] = []
        for i, member in enumerate(model.recommenders()):
            tcfg = TrainConfig.from_dict({**model.member_train_config(i), "device": train_config.device})
            # the ensemble's own `epochs` caps its members' (so a quick run of the ensemble is quick)
            tcfg = dataclasses.replace(tcfg, epochs=min(tcfg.epochs, train_config.epochs))
            member_ckpt = checkpoint.member(f"member{i}") if checkpoint is not None else None
            t_member = time.perf_counter()
            member_result = self._fit_member(
                train, valid, model.member_configs[i], tcfg, options.progress, member_ckpt
            )
            result.resumed_from = max(result.resumed_from, member_result.resumed_from)
            fitted = member_result.model
            member.load_state_dict(fitted.state_dict())
            result.history += member_result.history
            if valid is not None:
                # serving state from the fitting data only: validation ratings stay unseen
                self._trainer_for(fitted).finalize(fitted, train, tcfg)
                preds.append(predict_pairs(fitted, train, valid, resolve_device(train_config.device)))
            result.parts[f"member {i + 1} ({model.member_configs[i].kind})"] = round(time.perf_counter() - t_member, 3)
        if valid is not None:
            design = np.column_stack([*preds, np.ones(valid.nnz)]).astype(np.float64)
            weights = np.linalg.lstsq(design, valid.values.astype(np.float64), rcond=None)[0]
            model.blend.copy_(torch.from_numpy(weights).float())
            blended = RatingScale.infer(train.values).clip(design @ weights)  # as the scorer clips the blend
            result.best_valid_rmse = float(np.sqrt(np.mean((blended - valid.values) ** 2)))
            result.chosen = {"weights": [float(w) for w in weights]}
        result.best_epoch = len(result.history)
        model.eval()
        result.seconds = time.perf_counter() - start
        return result

    def finalize(self, model: Recommender, full: Csr, train_config: TrainConfig) -> None:
        """Every member's serving state from all training ratings; with refit_full, refittable members are
        first retrained on them for the step count chosen on validation, keeping the blend weights."""
        ensemble = _ensemble(model)
        for i, member in enumerate(ensemble.recommenders()):
            tcfg = TrainConfig.from_dict(ensemble.member_train_config(i))
            if ensemble.refit_full and member.refittable:
                self._gradient.refit(member, full, tcfg)
            self._trainer_for(member).finalize(member, full, tcfg)


def _ensemble(model: Recommender) -> Ensemble:
    if not isinstance(model, Ensemble):
        raise TypeError(f"the ensemble trainer trains Ensemble models, not {type(model).__name__}")
    return model
