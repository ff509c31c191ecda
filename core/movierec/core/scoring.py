"""In-process scoring: the one scorer behind the gRPC server, `movierec recommend`, bulk scoring and evaluation.

A `Scorer` holds the artifact's models on a device (CUDA when present) and answers two questions for a batch
of rating vectors: the top-k movies (ranking model; already-rated movies excluded; optional include/exclude
lists) and predicted ratings for given movies (rating model). Each call is one forward pass plus `torch.topk`
on the device; batching across callers is the server's job. No grpc here.

Cold start. An artifact may also hold side-information models (roles "cold-rating" / "cold-ranking",
`Recommender.side_information`). Each row of a batch is routed by what it carries:
  - a profile (`Profiles.present`): the side models score it from the profile and its ratings, if any;
  - no profile, some ratings: the main models, exactly as without cold start;
  - neither: the most popular movies (most ratings, then highest mean rating, then lowest id).
`with_catalog` gives a scorer whose catalog also holds movies added after training: they are extra columns
after the trained ones, scored by the side models from their metadata. For rows the main ranking model
scores, an added movie is placed by rank: where the side model puts it among the trained movies, it goes
in the main model's order too (the two models' scores are not comparable, their orders are).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from movierec.core.artifact import Artifact, RatingScale, load_artifact
from movierec.core.device import apply_thread_policy, coo_tensors, csr_tensor, dense_rows, resolve_device
from movierec.core.features import FeatureSchema, MovieTable, Profiles
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

    def table(self) -> MovieTable:
        return MovieTable(self.item_ids, list(self.titles), self.years, [list(g) for g in self.genres])

    def with_movies(self, movies: MovieTable, items: IdMap) -> Catalog:
        """The catalog over `items` (this catalog's movies, then added ones) with `movies`' metadata applied."""
        table = MovieTable(
            items.raw[: len(self.item_ids)], list(self.titles), self.years, [list(g) for g in self.genres]
        ).merged(movies)
        pos = IdMap(table.movie_ids).to_index(items.raw)  # table is sorted by id
        return Catalog(
            items.raw,
            [table.titles[i] for i in pos.tolist()],
            table.years[pos],
            [table.genres[i] for i in pos.tolist()],
        )


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
    features: FeatureSchema = field(default_factory=FeatureSchema)
    profile_aware: bool = False  # a side ranking model scores profiles
    metadata_aware: bool = False  # side models score added movies from their metadata
    n_trained_items: int = 0


class Scorer:
    """Scores rating vectors with an artifact's models on one device."""

    def __init__(self, artifact: Artifact, device: torch.device) -> None:
        self.artifact = artifact
        self.device = device
        self.users: IdMap = artifact.users
        self.items: IdMap = artifact.items  # trained movies, then movies added with `with_catalog`
        self.n_trained = len(artifact.items)
        self.history: Csr = artifact.history
        self.rating_scale: RatingScale = artifact.rating_scale  # predictions are clipped into it
        self.catalog = Catalog.from_frame(artifact.catalog, artifact.items)
        self.features: FeatureSchema = artifact.features
        self._models: dict[str, Recommender] = {}
        for role, entry in artifact.models.items():
            model = build_model(entry.config)
            model.load_state_dict(entry.state)
            self._models[role] = model.to(device).eval()
        if "rating" not in self._models and "ranking" not in self._models:
            raise ValueError("artifact has neither a 'rating' nor a 'ranking' model")
        self.rating_model = self._models.get("rating") or self._models["ranking"]
        self.ranking_model = self._models.get("ranking") or self._models["rating"]
        self.side_rating: Recommender | None = self._models.get("cold-rating")
        self.side_ranking: Recommender | None = self._models.get("cold-ranking")
        # Fallbacks for rows with no ratings: the movie's mean training rating (global mean if unrated).
        counts = np.bincount(self.history.indices, minlength=len(self.items))
        sums = np.bincount(self.history.indices, weights=self.history.values, minlength=len(self.items))
        self.global_mean = float(self.history.values.mean()) if self.history.nnz else self.rating_scale.midpoint
        self.item_means = np.where(counts > 0, sums / np.maximum(counts, 1), self.global_mean).astype(np.float32)
        # Popularity (queries with neither ratings nor a profile): most ratings, then the highest mean
        # rating, then the lowest id; scores descend from 1 in that order, so no tie is left to chance.
        order = np.lexsort((self.items.raw, -self.item_means, -counts))
        popularity = np.empty(len(self.items), dtype=np.float32)
        popularity[order] = 1.0 - np.arange(len(self.items), dtype=np.float32) / max(len(self.items), 1)
        self.popularity = popularity
        self._popularity_t = torch.from_numpy(popularity).to(device)
        # Known users' profiles (side models score their added movies with them); not "present": a known
        # user's ratings are scored by the main models.
        if artifact.profiles is not None and len(artifact.profiles):
            frame = artifact.profiles.drop_duplicates("user").set_index("user").reindex(self.users.raw)
            known = Profiles.from_frame(frame.reset_index(drop=True))
            self.known_profiles: Profiles = dataclasses.replace(known, present=np.zeros(len(known), bool))
        else:
            self.known_profiles = Profiles.empty(len(self.users))
        self._added_features = torch.zeros((0, self.features.n_item_features), device=device)
        self.added = MovieTable.empty()
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
            features=self.features,
            profile_aware=self.side_ranking is not None and self.features.n_user_features > 0,
            metadata_aware=self.side_ranking is not None and self.features.n_item_features > 0,
            n_trained_items=self.n_trained,
        )

    @classmethod
    def load(cls, artifact_dir: str | Path, device: str = "auto") -> Scorer:
        return cls(load_artifact(artifact_dir), resolve_device(device))

    @property
    def n_items(self) -> int:
        return len(self.items)

    def with_catalog(self, movies: MovieTable) -> Scorer:
        """A scorer sharing this one's models whose catalog has `movies` applied: ids of the trained catalog
        get their metadata replaced (titles, years, genres: display only, the models are unchanged), other
        ids become candidates after the trained movies (in id order), scored from their metadata. `movies` is the whole
        overlay (every added or updated movie), not a delta: the result does not depend on earlier calls."""
        base = self.items.raw[: self.n_trained]
        trained = IdMap(base)
        new = MovieTable.empty().merged(movies.without(base)) if len(movies) else movies  # sorted by id
        view = copy.copy(self)
        view.items = trained.extended(new.movie_ids) if len(new) else trained
        view.catalog = Catalog.from_frame(self.artifact.catalog, trained).with_movies(movies, view.items)
        view.added = new
        view._added_features = torch.from_numpy(self.features.encode_items(new)).to(self.device)
        m = len(new)
        view.history = Csr(self.history.indptr, self.history.indices, self.history.values, len(view.items))
        view.item_means = np.concatenate([self.item_means[: self.n_trained], np.full(m, self.global_mean, np.float32)])
        # added movies have no ratings: after every trained movie by popularity, in id order
        tail = -np.arange(1, m + 1, dtype=np.float32) / max(len(view.items), 1)
        view.popularity = np.concatenate([self.popularity[: self.n_trained], tail])
        view._popularity_t = torch.from_numpy(view.popularity).to(self.device)
        view.info = dataclasses.replace(self.info, n_items=len(view.items))
        return view

    def _user_features(self, profiles: Profiles) -> torch.Tensor:
        return torch.from_numpy(self.features.encode_users(profiles)).to(self.device)

    @staticmethod
    def _trained_part(inputs: Csr, n: int) -> Csr:
        """`inputs` without its columns >= n (movies added after training), as an n-column matrix."""
        if inputs.n_cols == n:
            return inputs
        keep = inputs.indices < n
        if keep.all():
            return Csr(inputs.indptr, inputs.indices, inputs.values, n)
        rows = np.repeat(np.arange(inputs.n_rows, dtype=np.int64), inputs.row_lengths())[keep]
        return Csr.from_coo(rows, inputs.indices[keep], inputs.values[keep], inputs.n_rows, n)

    def _route(self, inputs: Csr, profiles: Profiles | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row indices scored by (the main models, the side models, popularity)."""
        rows = np.arange(inputs.n_rows)
        present = (
            profiles.present
            if profiles is not None and self.side_ranking is not None
            else np.zeros(inputs.n_rows, bool)
        )
        empty = (inputs.row_lengths() == 0) & ~present
        return rows[~present & ~empty], rows[present], rows[empty]

    def _profiles(self, profiles: Profiles | None, n_rows: int) -> Profiles:
        return profiles if profiles is not None else Profiles.empty(n_rows)

    def _main_ranking(self, inputs: Csr, profiles: Profiles) -> torch.Tensor:
        """Ranking scores of the main model for all columns of `inputs` (added movies placed by rank)."""
        n, m = self.n_trained, inputs.n_cols - self.n_trained
        trained = self._trained_part(inputs, n)
        if _sparse_ranking(self.ranking_model, trained):
            scores = self.ranking_model.scores_sparse(csr_tensor(trained, self.device)).float()
        else:
            scores = self.ranking_model.scores(dense_rows(trained, self.device)).float()
        if m == 0:
            return scores.contiguous()
        if self.side_ranking is None:  # no model for added movies: candidates after every trained one
            low = scores.min(dim=1, keepdim=True).values - 1.0
            return torch.cat([scores, low.expand(-1, m)], dim=1).contiguous()
        side = self.side_ranking.scores_side(
            dense_rows(inputs, self.device), self._user_features(profiles), self._added_features
        ).float()
        return torch.cat([scores, _place_by_rank(scores, side[:, :n], side[:, n:])], dim=1).contiguous()

    def _side_ranking(self, inputs: Csr, profiles: Profiles) -> torch.Tensor:
        assert self.side_ranking is not None
        x = dense_rows(inputs, self.device)
        return self.side_ranking.scores_side(x, self._user_features(profiles), self._added_features).float()

    @torch.inference_mode()
    def topk(
        self,
        inputs: Csr,
        k: int,
        *,
        exclude: Csr | None = None,
        include: Csr | None = None,
        include_rows: npt.NDArray[np.bool_] | None = None,
        profiles: Profiles | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k items per input row, best first; already-rated items are never returned.

        `profiles` (aligned with the rows): rows whose profile is `present` are scored by the side models.
        Rows with fewer than k candidates are padded with item -1 and score -inf.
        """
        if inputs.n_cols != self.n_items:
            raise ValueError(f"inputs have {inputs.n_cols} columns, the model has {self.n_items} movies")
        apply_thread_policy()
        k = min(int(k), self.n_items)
        neg_inf = float("-inf")
        main, side, empty = self._route(inputs, profiles)
        if side.size == 0 and empty.size == 0 and self.n_items == self.n_trained:
            # the plain path: the main model on every row, no added movies
            if _sparse_ranking(self.ranking_model, inputs):
                # Sparse rows straight into the model (EASE, autoencoders): no dense batch; rated movies
                # masked by one scatter.
                scores = self.ranking_model.scores_sparse(csr_tensor(inputs, self.device)).float().contiguous()
            else:
                scores = self.ranking_model.scores(dense_rows(inputs, self.device)).float().contiguous()
        else:
            prof = self._profiles(profiles, inputs.n_rows)
            scores = torch.empty((inputs.n_rows, self.n_items), dtype=torch.float32, device=self.device)
            if main.size:
                rows = main if main.size < inputs.n_rows else slice(None)
                part = inputs.rows(main) if main.size < inputs.n_rows else inputs
                scores[rows] = self._main_ranking(part, prof.take(main) if main.size < inputs.n_rows else prof)
            if side.size:
                scores[torch.from_numpy(side).to(self.device)] = self._side_ranking(inputs.rows(side), prof.take(side))
            if empty.size:
                scores[torch.from_numpy(empty).to(self.device)] = self._popularity_t
        _fill_entries(scores, inputs, neg_inf, nonzero_only=True)
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
    def predict(
        self, inputs: Csr, targets: Csr, *, profiles: Profiles | None = None
    ) -> npt.NDArray[np.float32]:
        """Predicted ratings within the rating scale at each (row, item) of `targets`, in targets' CSR order.

        Rows with a `present` profile, and movies added after training, are predicted by the side rating
        model (when the artifact has one); other rows by the main rating model.
        """
        if targets.n_rows != inputs.n_rows:
            raise ValueError(f"targets have {targets.n_rows} rows, inputs {inputs.n_rows}")
        if targets.nnz == 0:
            return np.zeros(0, dtype=np.float32)
        apply_thread_policy()
        n = self.n_trained
        t_rows = np.repeat(np.arange(targets.n_rows), targets.row_lengths())
        t_cols = targets.indices
        present = (
            profiles.present if profiles is not None and self.side_rating is not None else np.zeros(inputs.n_rows, bool)
        )
        pred = np.full(targets.nnz, self.global_mean, dtype=np.float32)
        by_side = present[t_rows] | (t_cols >= n)
        main = ~by_side
        if main.any():
            trained = self._trained_part(inputs, n)
            if "rating" not in self._models:
                # A top-N model alone (Mult-VAE, EASE) scores preferences, not ratings: answer each movie's
                # mean training rating rather than a meaningless clipped score.
                pred[main] = self.item_means[t_cols[main]]
            else:
                out = self.rating_model.scores(dense_rows(trained, self.device))
                r = torch.from_numpy(t_rows[main]).to(self.device)
                c = torch.from_numpy(t_cols[main]).to(self.device)
                pred[main] = out[r, c].float().cpu().numpy()
                # A vector with no ratings carries no signal: answer the movie's mean rating instead.
                cold = main & (trained.row_lengths() == 0)[t_rows]
                pred[cold] = self.item_means[t_cols[cold]]
        if by_side.any() and self.side_rating is not None:
            rows = np.unique(t_rows[by_side])
            prof = self._profiles(profiles, inputs.n_rows).take(rows)
            out = self.side_rating.scores_side(
                dense_rows(inputs.rows(rows), self.device), self._user_features(prof), self._added_features
            )
            local = np.searchsorted(rows, t_rows[by_side])
            r = torch.from_numpy(local).to(self.device)
            c = torch.from_numpy(t_cols[by_side]).to(self.device)
            pred[by_side] = out[r, c].float().cpu().numpy()
        return self.rating_scale.clip(pred)

    def recommend_users(self, user_index: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k for known users (dense indices) from their training history."""
        idx = np.asarray(user_index, dtype=np.int64)
        profiles = self.known_profiles.take(idx) if self.n_items > self.n_trained else None
        return self.topk(self.history.rows(idx), k, profiles=profiles)

    def warmup(self, batch_size: int = 8) -> None:
        """Run the models once so the first real call pays no lazy-initialization cost."""
        n = min(batch_size, max(len(self.users), 1))
        rows = self.history.rows(np.arange(n) % max(len(self.users), 1)) if len(self.users) else Csr.empty(1, self.n_items)
        self.topk(rows, min(10, self.n_items))
        self.predict(rows, rows)
        if self.side_ranking is not None:
            present = Profiles.empty(rows.n_rows)
            present = dataclasses.replace(present, present=np.ones(rows.n_rows, bool))
            self.topk(rows, min(10, self.n_items), profiles=present)
            self.predict(rows, rows, profiles=present)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _place_by_rank(main: torch.Tensor, side_trained: torch.Tensor, side_added: torch.Tensor) -> torch.Tensor:
    """Main-model scores for added movies: each goes where the side model ranks it among the trained movies.

    main, side_trained: B x n scores of the trained movies; side_added: B x m. An added movie that the side
    model scores above p of the trained movies gets the midpoint of the main model's p-th and (p+1)-th lowest
    scores (just below the lowest / above the highest at the ends), so it lands in the same place of the
    main model's order."""
    b, n = main.shape
    ranks = torch.searchsorted(torch.sort(side_trained, dim=1).values.contiguous(), side_added.contiguous())
    ordered = torch.sort(main, dim=1).values
    span = (ordered[:, -1:] - ordered[:, :1]).clamp(min=1e-6)
    padded = torch.cat([ordered[:, :1] - 1e-3 * span, ordered, ordered[:, -1:] + 1e-3 * span], dim=1)
    return (padded.gather(1, ranks) + padded.gather(1, ranks + 1)) / 2
