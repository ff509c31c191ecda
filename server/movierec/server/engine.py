"""The serving core: validated numpy requests -> batched scorer calls -> numpy results (no grpc here).

The servicer converts protos to the arrays these methods take and the results back; the scorer is anything
with the `ScorerLike` interface (`movierec.core.scoring.Scorer` in production, fakes in tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from movierec.core.artifact import RatingScale
from movierec.core.features import MovieTable, Profiles
from movierec.core.sparse import Csr, IdMap
from movierec.server import validation as v
from movierec.server.batcher import BatchObserver, DynamicBatcher, StepTracer
from movierec.server.catalog_overlay import Overlay, OverlayError, OverlayFile, Rebase
from movierec.server.config import ServerSettings
from movierec.server.errors import ErrorCode, RequestError, invalid

if TYPE_CHECKING:  # the scorer (torch) is loaded by the model manager, not at import
    from movierec.core.scoring import ModelInfo

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
log = logging.getLogger("movierec.server")
INLINE_MAX_S = 0.001  # seconds: small model steps quicker than this run on the event loop (batcher)
_NO_CHANGE = Rebase(np.zeros(0, np.int64), np.zeros(0, np.int64))


def _some(ids: IntArray, n: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:n].tolist())
    return shown + (f", ... ({ids.size} in all)" if ids.size > n else "")


class ScorerLike(Protocol):
    info: ModelInfo
    users: IdMap
    items: IdMap  # the trained movies (dense indices 0..n_trained-1), then movies added while serving
    catalog: Any
    history: Csr
    device: Any
    rating_scale: RatingScale  # the ratings the model was trained on: requests are validated against it
    n_trained: int  # movies the models were trained on
    known_profiles: Profiles  # of the known users, aligned with `users` (not `present`)
    added: MovieTable  # movies added while serving (columns n_trained..)

    def topk(
        self,
        inputs: Csr,
        k: int,
        *,
        exclude: Csr | None = None,
        include: Csr | None = None,
        include_rows: np.ndarray | None = None,
        profiles: Profiles | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def predict(self, inputs: Csr, targets: Csr, *, profiles: Profiles | None = None) -> np.ndarray: ...

    def with_catalog(self, movies: MovieTable) -> ScorerLike: ...


def has_added_movies(scorer: ScorerLike) -> bool:
    """Whether the scorer's catalog holds movies added while serving (columns after the trained ones)."""
    return len(scorer.items) > scorer.n_trained


def known_user_profiles(scorer: ScorerLike, users: IntArray) -> Profiles | None:
    """What `topk` needs for rows of known users: their profiles when movies were added (the side models
    score the added movies for them), else nothing (the plain path)."""
    return scorer.known_profiles.take(users) if has_added_movies(scorer) else None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One servable model version: the scorer plus what the engine derives from it once.

    A request captures the engine's current LoadedModel when it starts and uses that one to the end
    (validation, scoring, titles, model_version), so a hot swap never mixes two versions in one call.
    `scorer` is `base` with the catalog overlay applied (movies added or updated while serving; `scorer`
    is `base` itself when there are none); an upsert or a hot swap rebuilds from a base scorer.
    """

    scorer: ScorerLike
    version: str
    n_items: int
    titles: np.ndarray
    max_title_bytes: int
    max_movie_id: int
    path: Path | None = None
    base: ScorerLike | None = None  # None: `scorer` is the base
    id_order: IntArray | None = None  # dense indices in ascending raw id order (None: already ascending)
    # users' raw ids are first_user, first_user + 1, ... (MovieLens, synthetic data): a user's dense index is
    # its id minus first_user, no search (the per-call path); None: look ids up through the IdMap
    first_user: int | None = None

    @classmethod
    def of(cls, scorer: ScorerLike, path: Path | None = None, *, base: ScorerLike | None = None) -> LoadedModel:
        titles = list(scorer.catalog.titles)
        raw = scorer.items.raw
        n_items = len(raw)
        ascending = n_items < 2 or bool((raw[1:] > raw[:-1]).all())
        users = np.asarray(scorer.users.raw)
        contiguous = users.size > 0 and int(users[-1]) - int(users[0]) == users.size - 1 and bool(
            (np.diff(users) == 1).all()
        )
        return cls(
            scorer=scorer,
            version=str(scorer.info.version),
            n_items=n_items,
            titles=np.array(titles, dtype=object),
            max_title_bytes=max((len(t.encode()) for t in titles), default=0),
            max_movie_id=int(raw.max()) if n_items else 0,
            path=path,
            base=base if base is not scorer else None,
            id_order=None if ascending else np.argsort(raw, kind="stable").astype(np.int64),
            first_user=int(users[0]) if contiguous else None,
        )

    def user_index(self, user_ids: IntArray) -> IntArray:
        """Dense indices of known users' raw ids; an unknown id -> NOT_FOUND (validation.users_to_index)."""
        first = self.first_user
        if first is not None:
            n = len(self.scorer.users)
            if user_ids.size == 1:  # the common online call: plain integer arithmetic
                u = int(user_ids[0]) - first
                if 0 <= u < n:
                    return np.array([u], dtype=np.int64)
            else:
                idx = user_ids - first
                if not ((idx < 0) | (idx >= n)).any():
                    return idx
        return v.users_to_index(user_ids, self.scorer.users)

    @property
    def base_scorer(self) -> ScorerLike:
        return self.scorer if self.base is None else self.base

    def movies_by_id(self) -> IntArray:
        """Every dense index of the catalog, in ascending movie id order."""
        return np.arange(self.n_items, dtype=np.int64) if self.id_order is None else self.id_order


@dataclass(frozen=True)
class ScoreJob:
    """One request's share of a model step: rows of rating vectors plus what to compute for them.

    The rows are either `inputs` (rating vectors sent by the caller) or `users` (dense indices of known users,
    whose training histories the model step gathers for the whole batch at once).
    """

    inputs: Csr | None  # rating vectors, dense item indices (None: the histories of `users`)
    k: int  # top-k per row; 0 = none
    exclude: IntArray | None = None  # dense items excluded for every row of this job
    include: IntArray | None = None  # when set: the only candidate items, for every row
    targets: Csr | None = None  # items to predict ratings for, per row
    model: LoadedModel | None = field(default=None, compare=False)  # None = the engine's current model
    users: IntArray | None = None  # dense user indices, when inputs is None
    # profiles of the `inputs` rows (RatingsQuery.profile), None when no row carries one
    profiles: Profiles | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.inputs is None) == (self.users is None):
            raise ValueError("a ScoreJob has either inputs or users")

    @property
    def rows(self) -> int:
        if self.inputs is not None:
            return self.inputs.n_rows
        assert self.users is not None
        return int(self.users.size)


@dataclass(frozen=True)
class ScoreOutput:
    items: IntArray | None  # [rows, k] dense item index, -1 = padding
    scores: FloatArray | None  # [rows, k]
    predictions: FloatArray | None  # [targets.nnz] in targets' order
    movie_ids: IntArray | None = None  # [rows, k] raw movie ids of items, -1 = padding
    lengths: IntArray | None = None  # [rows] valid entries per row


@dataclass(frozen=True)
class TopK:
    """Top-k lists in raw ids. Row r holds lengths[r] valid entries; the rest is padding (-1, -inf)."""

    movie_ids: IntArray  # [rows, k] raw ids
    items: IntArray  # [rows, k] dense indices (for titles)
    scores: FloatArray
    lengths: IntArray


def stack_csr(parts: Sequence[Csr], n_cols: int) -> Csr:
    if len(parts) == 1:
        return parts[0]
    indptr = [np.zeros(1, dtype=np.int64)]
    offset = 0
    for p in parts:
        indptr.append(p.indptr[1:] + offset)
        offset += p.nnz
    return Csr(
        np.concatenate(indptr),
        np.concatenate([p.indices for p in parts]) if parts else np.zeros(0, np.int64),
        np.concatenate([p.values for p in parts]) if parts else np.zeros(0, np.float32),
        n_cols,
    )


def tiled(items: IntArray | None, rows: int, n_cols: int) -> Csr:
    """A Csr with the same item list on each of `rows` rows (empty rows when items is None)."""
    if items is None or items.size == 0:
        return Csr.empty(rows, n_cols)
    m = items.size
    return Csr(
        np.arange(rows + 1, dtype=np.int64) * m,
        np.tile(np.sort(items), rows),
        np.ones(rows * m, dtype=np.float32),
        n_cols,
    )


def job_inputs(scorer: ScorerLike, jobs: Sequence[ScoreJob]) -> Csr:
    """The rows of all `jobs`, stacked: one history gather when every job names known users."""
    if all(j.users is not None for j in jobs):
        users = [j.users for j in jobs if j.users is not None]
        return scorer.history.rows(users[0] if len(users) == 1 else np.concatenate(users))
    return stack_csr(
        [j.inputs if j.inputs is not None else scorer.history.rows(j.users) for j in jobs],  # type: ignore[arg-type]
        len(scorer.items),
    )


def job_profiles(scorer: ScorerLike, jobs: Sequence[ScoreJob]) -> Profiles | None:
    """The profiles of all `jobs`' rows, stacked, or None when the scorer needs none: no row carries a
    profile and the catalog holds no added movies (the plain path stays as cheap as before cold start).
    Rows of known users get their stored profiles (the side models score added movies for them)."""
    added = has_added_movies(scorer)
    if not added and all(j.profiles is None for j in jobs):
        return None
    parts = []
    for j in jobs:
        if j.users is not None:
            parts.append(scorer.known_profiles.take(j.users) if added else Profiles.empty(j.rows))
        else:
            parts.append(j.profiles if j.profiles is not None else Profiles.empty(j.rows))
    return parts[0] if len(parts) == 1 else Profiles.concat(parts)


def _with_profiles(profiles: Profiles | None) -> dict[str, Profiles]:
    return {} if profiles is None else {"profiles": profiles}


def run_batch(scorer: ScorerLike, jobs: Sequence[ScoreJob]) -> list[ScoreOutput]:
    """One model step for many jobs: one `topk` call (k = the largest k) and at most one `predict` call.

    Top-k lists come back as dense items, raw movie ids and row lengths, converted once for the whole batch.
    """
    n_items = len(scorer.items)
    topk_out: dict[int, tuple[IntArray, FloatArray, IntArray, IntArray]] = {}
    ranked = [i for i, j in enumerate(jobs) if j.k > 0]
    if ranked:
        sel = [jobs[i] for i in ranked]
        kmax = max(j.k for j in sel)
        inputs = job_inputs(scorer, sel)
        exclude = None
        if any(j.exclude is not None and j.exclude.size for j in sel):
            exclude = stack_csr([tiled(j.exclude, j.rows, n_items) for j in sel], n_items)
        include = include_rows = None
        if any(j.include is not None for j in sel):
            include = stack_csr([tiled(j.include, j.rows, n_items) for j in sel], n_items)
            include_rows = np.repeat(np.array([j.include is not None for j in sel]), [j.rows for j in sel])
        items, scores = scorer.topk(
            inputs, kmax, exclude=exclude, include=include, include_rows=include_rows,
            **_with_profiles(job_profiles(scorer, sel)),
        )  # fmt: skip
        items = np.asarray(items, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        valid = items >= 0
        movie_ids = np.where(valid, scorer.items.raw[np.maximum(items, 0)], -1)
        # valid entries per row, once for the batch (padding is only ever at a row's end), then views per job
        n_valid = valid.sum(axis=1)
        start = 0
        for i, j in zip(ranked, sel, strict=True):
            end = start + j.rows
            if j.k == kmax:
                topk_out[i] = (items[start:end], scores[start:end], movie_ids[start:end], n_valid[start:end])
            else:
                topk_out[i] = (items[start:end, : j.k], scores[start:end, : j.k], movie_ids[start:end, : j.k],
                               np.minimum(n_valid[start:end], j.k))  # fmt: skip
            start = end
    pred_out: dict[int, FloatArray] = {}
    predicted = [i for i, j in enumerate(jobs) if j.targets is not None and j.targets.nnz]
    if predicted:
        sel = [jobs[i] for i in predicted]
        inputs = job_inputs(scorer, sel)
        targets = stack_csr([j.targets for j in sel if j.targets is not None], n_items)
        preds = np.asarray(
            scorer.predict(inputs, targets, **_with_profiles(job_profiles(scorer, sel))), dtype=np.float32
        )
        start = 0
        for i, j in zip(predicted, sel, strict=True):
            assert j.targets is not None
            pred_out[i] = preds[start : start + j.targets.nnz]
            start += j.targets.nnz
    outputs = []
    for i, j in enumerate(jobs):
        pr = pred_out.get(i)
        if pr is None and j.targets is not None:
            pr = np.zeros(0, dtype=np.float32)
        top = topk_out.get(i)
        if top is None:
            outputs.append(ScoreOutput(None, None, pr))
        else:
            outputs.append(ScoreOutput(top[0], top[1], pr, top[2], top[3]))
    return outputs


def run_model_batches(current: LoadedModel, jobs: Sequence[ScoreJob]) -> list[ScoreOutput]:
    """One model step per model version present in `jobs` (almost always one): each job is scored by the
    model it captured when its request started (`current` for jobs that captured none)."""
    groups: dict[int, tuple[LoadedModel, list[int]]] = {}
    for i, j in enumerate(jobs):
        m = j.model or current
        groups.setdefault(id(m), (m, []))[1].append(i)
    if len(groups) == 1:
        ((m, _),) = groups.values()
        return run_batch(m.scorer, jobs)
    out: list[ScoreOutput | None] = [None] * len(jobs)
    for m, idx in groups.values():
        for i, r in zip(idx, run_batch(m.scorer, [jobs[i] for i in idx]), strict=True):
            out[i] = r
    return [r for r in out if r is not None]


@dataclass(frozen=True)
class UpsertResult:
    model: LoadedModel  # serving from now on
    added: int  # movies new to the catalog
    updated: int  # movies already in it (trained or added before): metadata replaced


class Engine:
    """Validates requests, builds score jobs, submits them to the batcher, maps results back to raw ids.

    `model` is the version serving new requests; `swap()` replaces it atomically (one reference assignment
    on the event loop); requests already started finish on the model they captured.

    The catalog overlay (movies added or updated with UpsertMovies, `movierec.server.catalog_overlay`) is
    loaded from `settings.catalog_overlay` ("" = in memory only) and applied to every model: at start,
    on each upsert and on each hot swap (`prepare` + `install`). `catalog_lock` serializes those changes.
    """

    def __init__(
        self,
        scorer: ScorerLike,
        settings: ServerSettings,
        *,
        observer: BatchObserver | None = None,
        tracer: StepTracer | None = None,
    ) -> None:
        self.settings = settings
        self.swaps = 0
        self.on_swap: list[Callable[[LoadedModel, LoadedModel], None]] = []  # (old, new), after a swap
        self.load_seconds = 0.0  # how long the serving version took to load and warm (set by its loader)
        self.catalog_lock = asyncio.Lock()
        self.overlay_file = OverlayFile(settings.catalog_overlay or None)
        with self.overlay_file.locked():  # other workers may be writing it
            self._overlay_stamp = self.overlay_file.stamp()
            self.overlay = self.overlay_file.load()  # OverlayError (a ValueError naming the file): no start
        path = Path(settings.artifact) if settings.artifact else None
        self.model, overlay, change = self.prepare(scorer, path)
        self._adopt_overlay(overlay, change, self.model)
        self.batcher: DynamicBatcher[ScoreJob, ScoreOutput] = DynamicBatcher(
            lambda jobs: run_model_batches(self.model, jobs),
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_delay_ms / 1000.0,
            max_queue_size=settings.max_queue_size,
            rows_of=lambda job: job.rows,
            observer=observer,
            tracer=tracer,
            # CPU models: steps of a few users that cost under 1 ms run on the event loop (no thread hand-off
            # for a lone caller); on CUDA every step stays in the model thread
            inline_max_s=0.0 if str(scorer.device).startswith("cuda") else INLINE_MAX_S,
        )

    # -- the current model ---------------------------------------------------------------------------------
    @property
    def scorer(self) -> ScorerLike:
        return self.model.scorer

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def titles(self) -> np.ndarray:
        return self.model.titles

    @property
    def n_items(self) -> int:
        return self.model.n_items

    def max_k(self, model: LoadedModel | None = None) -> int:
        return min(self.settings.max_k, (model or self.model).n_items)

    # -- the catalog overlay ------------------------------------------------------------------------------
    def prepare(self, base: ScorerLike, path: Path | None) -> tuple[LoadedModel, Overlay, Rebase]:
        """`base` with the current overlay applied (rebased on base's trained catalog), not yet serving.
        Blocking (builds the scorer view): call it in a worker thread from the event loop."""
        trained = base.items.raw[: base.n_trained] if len(self.overlay) else np.zeros(0, np.int64)
        overlay, change = self.overlay.rebased(trained) if len(self.overlay) else (self.overlay, _NO_CHANGE)
        if not len(overlay):
            return LoadedModel.of(base, path), overlay, change
        return LoadedModel.of(base.with_catalog(overlay.movies), path, base=base), overlay, change

    def _log_rebase(self, change: Rebase, model: LoadedModel) -> None:
        log.info(
            "movierec catalog overlay: %d added movies superseded by model %s (trained on them: ids %s), "
            "%d updated movies it was not trained on kept as added movies",
            change.superseded.size,
            model.version,
            _some(change.superseded),
            change.orphaned.size,
        )

    def _save_rebased(self, overlay: Overlay) -> None:
        try:
            with self.overlay_file.locked():
                self.overlay_file.save(overlay)
                self._overlay_stamp = self.overlay_file.stamp()
        except OSError as exc:
            # the file keeps entries the new model supersedes: they are superseded again on the next load
            log.warning("movierec catalog overlay: cannot rewrite %s (%s)", self.overlay_file.path, exc)

    def _adopt_overlay(self, overlay: Overlay, change: Rebase, model: LoadedModel) -> None:
        """At start: make `overlay` (from `prepare`) current; rewrite its file when the rebase changed it."""
        if change.changed:
            self._log_rebase(change, model)
            self._save_rebased(overlay)
        self.overlay = overlay

    async def install(self, model: LoadedModel, overlay: Overlay, change: Rebase) -> LoadedModel:
        """Serve `model` (from `prepare`, under `catalog_lock`) with its rebased overlay, rewriting the overlay
        file (in a worker thread) when the rebase changed it; returns the model served before."""
        if change.changed:
            self._log_rebase(change, model)
            await asyncio.to_thread(self._save_rebased, overlay)
        self.overlay = overlay
        return self.swap(model)

    async def upsert_movies(self, movies: MovieTable) -> UpsertResult:
        """Add `movies` (validated) to the catalog or replace their metadata; persisted before it serves.

        Shielded: a caller that goes away (cancellation, deadline) does not stop an upsert half-way, so the
        file and the model serving never disagree."""
        return await asyncio.shield(self._upsert(movies))

    def _merge_file(self, trained: IntArray) -> Overlay:
        """The overlay with what other workers wrote to the file since this one last read it (the file is
        only ever written under its lock and holds every upsert, so it is never older than `self.overlay`)."""
        stamp = self.overlay_file.stamp()
        if stamp == self._overlay_stamp:
            return self.overlay
        theirs = self.overlay_file.load()
        self._overlay_stamp = stamp
        return self.overlay.upserted(theirs.movies, trained) if len(theirs) else self.overlay

    async def _upsert(self, movies: MovieTable) -> UpsertResult:
        async with self.catalog_lock:
            lock = self.overlay_file.locked()  # against the other workers (--workers): read, merge, write
            await asyncio.to_thread(lock.__enter__)
            try:
                return await self._upsert_locked(movies)
            finally:
                lock.__exit__(None, None, None)

    async def _upsert_locked(self, movies: MovieTable) -> UpsertResult:
        m = self.model
        base = m.base_scorer
        trained = base.items.raw[: base.n_trained]
        try:
            current = await asyncio.to_thread(self._merge_file, trained)
        except OverlayError as exc:
            raise RequestError(ErrorCode.INTERNAL, f"movies: {exc}; nothing was changed") from None
        known = (m.scorer.items.to_index(movies.movie_ids) >= 0) | np.isin(movies.movie_ids, current.movies.movie_ids)
        overlay = current.upserted(movies, trained)
        view = await asyncio.to_thread(base.with_catalog, overlay.movies)
        new = await asyncio.to_thread(LoadedModel.of, view, m.path, base=base)
        try:
            await asyncio.to_thread(self.overlay_file.save, overlay)
        except OSError as exc:
            raise RequestError(
                ErrorCode.INTERNAL,
                f"movies: cannot save the catalog overlay {self.overlay_file.path} "
                f"({exc.strerror or exc}); nothing was changed",
            ) from None
        self._overlay_stamp = self.overlay_file.stamp()
        self.overlay = overlay
        self.model = new  # one reference assignment: calls in flight keep the model they captured
        added = int((~known).sum())
        log.info(
            "movierec catalog: %d movies added, %d updated (now %d movies, %d added while serving)",
            added, movies.movie_ids.size - added, new.n_items, len(overlay.added),
        )  # fmt: skip
        return UpsertResult(new, added, int(known.sum()))

    async def refresh_overlay(self) -> bool:
        """Apply what other workers upserted (the overlay file changed since this worker last read or wrote
        it); True when the catalog served changed. Polled by each worker of `serve --workers N`."""
        if self.overlay_file.stamp() == self._overlay_stamp:
            return False
        async with self.catalog_lock:
            m = self.model
            base = m.base_scorer
            try:
                merged = await asyncio.to_thread(self._merge_file, base.items.raw[: base.n_trained])
            except OverlayError as exc:
                log.warning("movierec catalog overlay: not re-applied: %s", exc)
                self._overlay_stamp = self.overlay_file.stamp()  # not retried until it changes again
                return False
            if merged is self.overlay or merged.to_json() == self.overlay.to_json():
                return False
            view = await asyncio.to_thread(base.with_catalog, merged.movies)
            self.model = await asyncio.to_thread(LoadedModel.of, view, m.path, base=base)
            self.overlay = merged
            log.info(
                "movierec catalog overlay: re-applied %s (changed by another worker): now %d movies, %d added "
                "while serving", self.overlay_file.path, self.model.n_items, len(merged.added),
            )  # fmt: skip
            return True

    def swap(self, model: LoadedModel) -> LoadedModel:
        """Serve `model` from now on; returns the previous one (still used by requests in flight)."""
        old, self.model = self.model, model
        self.swaps += 1
        for callback in self.on_swap:
            callback(old, model)
        return old

    # -- shared checks ------------------------------------------------------------------------------------
    def _check_k(self, k: int, m: LoadedModel, *, allow_zero: bool = False) -> None:
        limit = self.max_k(m)
        v.check_k(k, limit, allow_zero=allow_zero, what="the catalog size" if limit == m.n_items else "max_k")

    def _candidates(
        self, exclude_ids: IntArray, include_ids: IntArray, m: LoadedModel
    ) -> tuple[IntArray | None, IntArray | None]:
        exclude = (
            v.movies_to_index(exclude_ids, m.scorer.items, "exclude_movie_ids")
            if exclude_ids.size
            else None
        )
        include = (
            v.movies_to_index(include_ids, m.scorer.items, "include_movie_ids")
            if include_ids.size
            else None
        )
        return exclude, include

    def _check_size(self, n_lists: int, k: int, titles: bool, m: LoadedModel) -> None:
        bound = v.response_bytes_bound(n_lists, k, m.max_movie_id, m.max_title_bytes, titles)
        limit = self.settings.max_message_bytes
        if bound > limit:
            raise invalid(
                f"k: {n_lists} lists of k={k}{' with titles' if titles else ''} could take {bound} bytes, above "
                f"the {limit}-byte message limit; ask for fewer users per call or a smaller k"
            )

    @staticmethod
    def _topk(out: ScoreOutput) -> TopK:
        assert out.items is not None and out.scores is not None
        assert out.movie_ids is not None and out.lengths is not None
        return TopK(out.movie_ids, out.items, out.scores, out.lengths.astype(np.int64, copy=False))

    # -- operations ---------------------------------------------------------------------------------------
    async def recommend(
        self,
        user_ids: IntArray,
        k: int,
        exclude_ids: IntArray,
        include_ids: IntArray,
        *,
        titles: bool = False,
        deadline: float | None = None,
        model: LoadedModel | None = None,
    ) -> TopK:
        m = model or self.model
        v.check_count(user_ids.size, self.settings.max_users_per_call, "user_ids")
        self._check_k(k, m)
        users = m.user_index(user_ids)
        exclude, include = self._candidates(exclude_ids, include_ids, m)
        self._check_size(user_ids.size, k, titles, m)
        job = ScoreJob(None, k, exclude, include, model=m, users=users)  # histories gathered in the batch
        return self._topk(await self.batcher.submit(job, deadline=deadline))

    async def recommend_for_ratings(
        self,
        movie_ids: IntArray,
        ratings: FloatArray,
        id_lengths: IntArray,
        rating_lengths: IntArray,
        predict_ids: IntArray,
        predict_lengths: IntArray,
        k: int,
        exclude_ids: IntArray,
        include_ids: IntArray,
        *,
        titles: bool = False,
        deadline: float | None = None,
        model: LoadedModel | None = None,
        profiles: v.ProfileFields | None = None,
    ) -> tuple[TopK | None, FloatArray | None]:
        """Top-k (when k > 0) and predictions (flat, aligned with predict_ids) for rating vectors, each with
        an optional user profile (`profiles`: the queries' UserProfile fields; None = no query has one)."""
        m = model or self.model
        v.check_count(id_lengths.size, self.settings.max_users_per_call, "queries")
        self._check_k(k, m, allow_zero=True)
        if k == 0 and predict_ids.size == 0:
            raise invalid(
                "k: 0 and no predict_movie_ids in any query; ask for recommendations (k >= 1) or predictions"
            )
        inputs = v.rating_vectors(movie_ids, ratings, id_lengths, rating_lengths, m.scorer.items, m.scorer.rating_scale)
        targets = (
            v.target_lists(predict_ids, predict_lengths, m.scorer.items) if predict_ids.size else None
        )
        exclude, include = self._candidates(exclude_ids, include_ids, m)
        if k:
            self._check_size(id_lengths.size, k, titles, m)
        if 9 * predict_ids.size + 64 > self.settings.max_message_bytes:
            raise invalid(f"queries: {predict_ids.size} predict_movie_ids are too many for the message limit")
        checked = v.profiles(profiles) if profiles is not None else None
        if checked is not None and not checked.present.any():
            checked = None  # profiles with nothing given: scored as without
        job = ScoreJob(inputs, k, exclude, include, targets, model=m, profiles=checked)
        out = await self.batcher.submit(job, deadline=deadline)
        return (self._topk(out) if k else None), out.predictions
