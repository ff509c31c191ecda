"""In-process scoring: the one scorer behind the gRPC server, `movierec recommend`, bulk scoring and evaluation.

A `Scorer` holds the artifact's models on a device (CUDA when present) and answers two questions for a batch
of rating vectors: the top-k movies (ranking model; already-rated movies excluded; optional include/exclude
lists) and predicted ratings for given movies (rating model). Each call is one forward pass plus `torch.topk`
on the device; batching across callers is the server's job. No grpc here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from movierec.core.artifact import Artifact, RatingScale, load_artifact
from movierec.core.device import apply_thread_policy, coo_tensors, csr_tensor, dense_rows, resolve_device
from movierec.core.models import SPARSE_INPUT_DENSITY, Recommender, build_model
from movierec.core.sparse import Csr, IdMap


def _fill_entries(scores: torch.Tensor, matrix: Csr, value: float, *, nonzero_only: bool = False) -> None:
    """scores[r, c] = value at every stored entry (r, c) of `matrix` (same shape; with `nonzero_only`, only
    where the stored value is not 0). One index_fill_ on flat positions computed in numpy."""
    flat = np.repeat(np.arange(matrix.n_rows, dtype=np.int64) * scores.shape[1], matrix.row_lengths())
    flat += matrix.indices
    if nonzero_only and not matrix.values.all():
        flat = flat[matrix.values != 0]
    scores.view(-1).index_fill_(0, torch.from_numpy(flat).to(scores.device), value)


def _sparse_ranking(model: Recommender, inputs: Csr) -> bool:
    """Whether `model` scores sparse rows itself (`sparse_input`) and `inputs` is sparse enough to gain."""
    if not model.sparse_input or inputs.n_rows == 0 or inputs.n_cols == 0:
        return False
    return inputs.nnz < SPARSE_INPUT_DENSITY * inputs.n_rows * inputs.n_cols


@dataclass(frozen=True)
class Catalog:
    """Movie metadata aligned with the dense item index."""

    item_ids: npt.NDArray[np.int64]
    titles: list[str]
    years: npt.NDArray[np.int64]  # 0 = unknown
    genres: list[list[str]]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, items: IdMap) -> Catalog:
        df = frame.drop_duplicates("item").set_index("item").reindex(items.raw)
        titles = [t if isinstance(t, str) else f"movie {i}" for i, t in zip(items.raw, df["title"], strict=True)]
        years = pd.to_numeric(df["year"], errors="coerce").fillna(0).astype(np.int64).to_numpy()
        genres = [g.split("|") if isinstance(g, str) and g else [] for g in df["genres"]]
        return cls(items.raw, titles, years, genres)


@dataclass(frozen=True)
class ModelInfo:
    version: str
    dataset: str
    model_types: dict[str, str]
    n_users: int
    n_items: int
    n_ratings: int
    metrics: dict[str, Any]
    created_at: str
    training_seconds: float
    config: dict[str, Any] = field(default_factory=dict)


class Scorer:
    """Scores rating vectors with an artifact's models on one device."""

    def __init__(self, artifact: Artifact, device: torch.device) -> None:
        self.artifact = artifact
        self.device = device
        self.users: IdMap = artifact.users
        self.items: IdMap = artifact.items
        self.history: Csr = artifact.history
        self.rating_scale: RatingScale = artifact.rating_scale  # predictions are clipped into it
        self.catalog = Catalog.from_frame(artifact.catalog, artifact.items)
        self._models: dict[str, Recommender] = {}
        for role, entry in artifact.models.items():
            model = build_model(entry.config)
            model.load_state_dict(entry.state)
            self._models[role] = model.to(device).eval()
        if "rating" not in self._models and "ranking" not in self._models:
            raise ValueError("artifact has neither a 'rating' nor a 'ranking' model")
        self.rating_model = self._models.get("rating") or self._models["ranking"]
        self.ranking_model = self._models.get("ranking") or self._models["rating"]
        # Fallbacks for rows with no ratings: the movie's mean training rating (global mean if unrated).
        counts = np.bincount(self.history.indices, minlength=len(self.items))
        sums = np.bincount(self.history.indices, weights=self.history.values, minlength=len(self.items))
        self.global_mean = float(self.history.values.mean()) if self.history.nnz else self.rating_scale.midpoint
        self.item_means = np.where(counts > 0, sums / np.maximum(counts, 1), self.global_mean).astype(np.float32)
        meta = artifact.meta
        self.info = ModelInfo(
            version=artifact.version,
            dataset=str(meta.get("dataset", "")),
            model_types={role: e.config.kind for role, e in artifact.models.items()},
            n_users=len(self.users),
            n_items=len(self.items),
            n_ratings=self.history.nnz,
            metrics=artifact.metrics,
            created_at=str(meta.get("created_at", "")),
            training_seconds=float(meta.get("training", {}).get("seconds", 0.0)),
            config={role: e.config.to_dict() for role, e in artifact.models.items()},
        )

    @classmethod
    def load(cls, artifact_dir: str | Path, device: str = "auto") -> Scorer:
        return cls(load_artifact(artifact_dir), resolve_device(device))

    @property
    def n_items(self) -> int:
        return len(self.items)

    @torch.inference_mode()
    def topk(
        self,
        inputs: Csr,
        k: int,
        *,
        exclude: Csr | None = None,
        include: Csr | None = None,
        include_rows: npt.NDArray[np.bool_] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k items per input row, best first; already-rated items are never returned.

        Rows with fewer than k candidates are padded with item -1 and score -inf.
        """
        if inputs.n_cols != self.n_items:
            raise ValueError(f"inputs have {inputs.n_cols} columns, the model has {self.n_items} movies")
        apply_thread_policy()
        k = min(int(k), self.n_items)
        neg_inf = float("-inf")
        if _sparse_ranking(self.ranking_model, inputs):
            # Sparse rows straight into the model (EASE, autoencoders): no dense batch; rated movies masked
            # by one scatter.
            x_sparse = csr_tensor(inputs, self.device)
            scores = self.ranking_model.scores_sparse(x_sparse).float().contiguous()
            _fill_entries(scores, inputs, neg_inf, nonzero_only=True)
        else:
            x = dense_rows(inputs, self.device)
            scores = self.ranking_model.scores(x).float().contiguous()  # masks write through a flat view
            scores.masked_fill_(x != 0, neg_inf)
        if exclude is not None and exclude.nnz:
            _fill_entries(scores, exclude, neg_inf)
        if include is not None and include_rows is not None and include_rows.any():
            restricted = torch.zeros_like(scores, dtype=torch.bool)
            restricted[torch.from_numpy(np.flatnonzero(include_rows)).to(self.device)] = True
            if include.nnz:
                r, c, _ = coo_tensors(include, self.device)
                restricted[r, c] = False
            scores.masked_fill_(restricted, neg_inf)
        values, idx = torch.topk(scores, k, dim=1)
        if bool(torch.isnan(values).any()):  # topk ranks NaN first: a broken score is never recommended
            scores.masked_fill_(torch.isnan(scores), neg_inf)
            values, idx = torch.topk(scores, k, dim=1)
        values_np = values.cpu().numpy().astype(np.float32, copy=False)
        idx_np = idx.cpu().numpy().astype(np.int64, copy=False)
        idx_np[np.isneginf(values_np)] = -1
        return idx_np, values_np

    @torch.inference_mode()
    def predict(self, inputs: Csr, targets: Csr) -> npt.NDArray[np.float32]:
        """Predicted ratings within the rating scale at each (row, item) of `targets`, in targets' CSR order."""
        if targets.n_rows != inputs.n_rows:
            raise ValueError(f"targets have {targets.n_rows} rows, inputs {inputs.n_rows}")
        if targets.nnz == 0:
            return np.zeros(0, dtype=np.float32)
        apply_thread_policy()
        if "rating" not in self._models:
            # A top-N model alone (Mult-VAE, EASE) scores preferences, not ratings: answer each movie's mean
            # training rating rather than a meaningless clipped score.
            return self.rating_scale.clip(self.item_means[targets.indices])
        x = dense_rows(inputs, self.device)
        out = self.rating_model.scores(x)
        r, c, _ = coo_tensors(targets, self.device)
        pred = out[r, c].float().cpu().numpy()
        # A vector with no ratings carries no signal: answer the movie's mean rating instead.
        empty = inputs.row_lengths() == 0
        if empty.any():
            rows = np.repeat(np.arange(targets.n_rows), targets.row_lengths())
            cold = empty[rows]
            pred[cold] = self.item_means[targets.indices[cold]]
        return self.rating_scale.clip(pred)

    def recommend_users(self, user_index: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k for known users (dense indices) from their training history."""
        return self.topk(self.history.rows(np.asarray(user_index, dtype=np.int64)), k)

    def warmup(self, batch_size: int = 8) -> None:
        """Run the models once so the first real call pays no lazy-initialization cost."""
        n = min(batch_size, max(len(self.users), 1))
        rows = self.history.rows(np.arange(n) % max(len(self.users), 1)) if len(self.users) else Csr.empty(1, self.n_items)
        self.topk(rows, min(10, self.n_items))
        self.predict(rows, rows)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
