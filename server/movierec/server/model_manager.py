"""Hot model swaps: watch the artifact, load and warm a new version beside the old one, then switch.

`--artifact` is either one artifact directory (has `manifest.json`) or a *versions directory* whose
subdirectories are artifacts (`models/2024-05-01/`, `models/v7/`, ...): the complete version (one with a
`manifest.json`; dot-directories, i.e. `save_artifact`'s temp dirs, are ignored) whose manifest was written
last wins. The manager polls every `watch_interval_s` seconds and reloads at once on SIGHUP
(`ModelManager.reload`). A candidate is loaded (checksums verified), checked against the model being
served (its catalog must include every movie served now, movies added while serving included, so the ids
clients hold stay valid; a retrained catalog may add movies) and warmed up in a worker thread while the old
model keeps serving; the catalog overlay (movies added or updated with UpsertMovies) is re-applied to it,
added movies its training now includes being superseded; then one reference assignment on the event loop
makes it current. Calls already running finish on the model they started
with (each captured it); every response carries the version that produced it. A refused candidate is
logged with the reason and not retried until its files change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movierec.server.engine import Engine, LoadedModel, ScorerLike

log = logging.getLogger("movierec.server")

MANIFEST = "manifest.json"

Fingerprint = tuple[str, int, int, int]


def resolve_artifact(source: str | Path) -> Path:
    """The artifact to serve: `source` itself, or the newest complete version inside it."""
    root = Path(source)
    if (root / MANIFEST).is_file() or not root.is_dir():
        return root
    best: tuple[int, str, Path] | None = None
    for d in root.iterdir():
        if d.name.startswith(".") or not d.is_dir():
            continue
        try:
            st = (d / MANIFEST).stat()
        except OSError:
            continue
        key = (st.st_mtime_ns, d.name, d)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else root


def fingerprint(path: Path) -> Fingerprint | None:
    try:
        st = (path / MANIFEST).stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, st.st_ino)


def check_compatible(old: LoadedModel, new: LoadedModel) -> None:
    """Raise ValueError unless `new` can replace `old` without breaking clients: its catalog must include every
    movie `old` serves (trained ones among its trained movies; added ones trained or still added) and may
    hold more, so every id clients hold stays valid and no trained movie silently loses its model column."""
    a, b = old.scorer.items.raw, new.scorer.items.raw
    old_base, new_base = old.base_scorer, new.base_scorer
    old_trained = old_base.items.raw[: old_base.n_trained]
    new_trained = new_base.items.raw[: new_base.n_trained]
    missing = np.union1d(a[~np.isin(a, b)], old_trained[~np.isin(old_trained, new_trained)])
    if missing.size:
        shown = ", ".join(str(i) for i in missing[:5].tolist())
        raise ValueError(
            f"catalog size {len(new_trained)} lacks {missing.size} of the {len(a)} movies served now (ids {shown}"
            f"{', ...' if missing.size > 5 else ''}); a new model must keep every movie clients may use"
        )


def default_loader(device: str) -> Callable[[Path], ScorerLike]:
    def load(path: Path) -> ScorerLike:
        from movierec.core.scoring import Scorer  # torch: only when serving

        scorer = Scorer.load(path, device=device)
        scorer.warmup()
        return scorer

    return load


@dataclass
class SwapStats:
    swaps: int = 0
    refused: int = 0
    last_error: str = ""


class ModelManager:
    """Owns where models come from; `engine.swap()` is the only way a new one starts serving."""

    def __init__(
        self,
        source: str | Path,
        *,
        device: str = "auto",
        loader: Callable[[Path], ScorerLike] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.source = Path(source)
        self.loader = loader or default_loader(device)
        self.engine = engine
        self.stats = SwapStats()
        self._current: Fingerprint | None = None
        self._refused: Fingerprint | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def load_initial(self) -> tuple[ScorerLike, Path]:
        """Load what `source` points at now (blocking; errors propagate: there is nothing to fall back to)."""
        path = resolve_artifact(self.source)
        fp = fingerprint(path)
        scorer = self.loader(path)
        self._current = fp
        return scorer, path

    @property
    def current(self) -> Fingerprint | None:
        """The files of the model serving (None before one is loaded)."""
        return self._current

    def adopt(self, fp: Fingerprint | None) -> None:
        """The model serving was loaded elsewhere (the supervisor, before forking) from the files `fp` names."""
        self._current = fp

    def stale(self) -> bool:
        """Whether the newest artifact differs from the one serving (a worker restarted after a swap)."""
        return fingerprint(resolve_artifact(self.source)) != self._current

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        if self._current is None:
            self._current = fingerprint(resolve_artifact(self.source))

    async def reload(self, *, force: bool = False) -> bool:
        """Swap in the newest artifact if it changed (or `force`: also retry a refused one). True = swapped."""
        assert self.engine is not None, "attach() an engine first"
        async with self._lock:
            path = resolve_artifact(self.source)
            fp = fingerprint(path)
            if fp is None or fp == self._current or (fp == self._refused and not force):
                return False
            t0 = time.perf_counter()
            engine = self.engine
            try:
                scorer = await asyncio.to_thread(self.loader, path)
            except Exception as exc:  # ArtifactError, ValueError, torch errors: refuse, keep serving
                return self._refuse(fp, path, exc)
            if str(scorer.info.version) == engine.version:
                self._current = fp  # the same content again: nothing to do
                return False
            async with engine.catalog_lock:  # no upsert between applying the overlay and the swap
                try:
                    new, overlay, change = await asyncio.to_thread(engine.prepare, scorer, path)
                    check_compatible(engine.model, new)
                except Exception as exc:
                    return self._refuse(fp, path, exc)
                engine.load_seconds = time.perf_counter() - t0
                old = await engine.install(new, overlay, change)
            self._current, self._refused = fp, None
            self.stats.swaps += 1
            log.info(
                "movierec model swapped: %s -> %s (%s, loaded and warmed in %.1fs)",
                old.version,
                new.version,
                path,
                time.perf_counter() - t0,
            )
            return True

    def _refuse(self, fp: Fingerprint, path: Path, exc: Exception) -> bool:
        assert self.engine is not None
        self._refused = fp
        self.stats.refused += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "movierec model swap refused: %s: %s; still serving %s", path, self.stats.last_error, self.engine.version
        )
        return False

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception:  # never let the watcher die
                log.exception("movierec model watcher: unexpected error")

    def start_watching(self, interval: float) -> None:
        if interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(interval), name="movierec-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def describe_source(source: Path, served: Path) -> str:
    return str(served) if served == source else f"{served} (newest version in {source})"

