"""Movies added or updated while serving (UpsertMovies): the overlay, its file, and how it meets a model.

The overlay is every movie UpsertMovies was given, in two parts:
  - added:   movies the served model was not trained on; the scorer makes them extra columns after the
             trained ones, scored from their metadata (`Scorer.with_catalog`);
  - updated: new metadata (title, year, genres) for movies of the trained catalog; display only.
It is applied whole to the model's base scorer (`with_catalog(overlay.movies)`), never as a delta, so the
result depends only on the overlay and the model.

A new model (hot swap or restart on a retrained artifact) meets the overlay through `Overlay.rebased`: added
movies its trained catalog now includes are superseded (dropped: the retrained artifact knows them, with its
own metadata), updates of trained movies stay, and an update of a movie the new model was not trained on
becomes an added movie (every movie clients were given stays in the catalog).

The file lives beside the served model, never inside an artifact directory (retraining replaces those
whole); `ServerSettings.overlay_path` says where. It is JSON:

    {"format": "movierec-catalog-overlay", "format_version": 1,
     "added":   [{"movie_id": 1700, "title": "...", "year": 2024, "genres": ["Drama"]}, ...],
     "updated": [...]}

and is replaced atomically (temp file in the same directory, flush + fsync, os.replace, fsync of the
directory), so a crash leaves the old file or the new one, never a torn one. A file that does not parse or
holds an invalid movie is refused with an `OverlayError` naming the file (the server does not start: it
never drops added movies silently; fix the file or move it away to start without them).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from movierec.core.features import MovieTable
from movierec.server import validation as v
from movierec.server.errors import RequestError

FORMAT = "movierec-catalog-overlay"
FORMAT_VERSION = 1
IntArray = npt.NDArray[np.int64]


class OverlayError(ValueError):
    """A catalog overlay file that cannot be used; the message names the file and the problem."""


def _select(movies: MovieTable, mask: npt.NDArray[np.bool_]) -> MovieTable:
    """The rows of `movies` where `mask` is true (ids are unique), sorted by id."""
    if mask.all():
        return movies
    return movies.without(movies.movie_ids[~mask])


@dataclass(frozen=True)
class Rebase:
    """What `Overlay.rebased` changed: movie ids superseded by the model's training, and updates of movies it
    was not trained on that became added movies."""

    superseded: IntArray
    orphaned: IntArray

    @property
    def changed(self) -> bool:
        return bool(self.superseded.size or self.orphaned.size)


@dataclass(frozen=True)
class Overlay:
    """Movies added (not trained on) and updated (trained; new metadata), with disjoint ids, each sorted."""

    added: MovieTable
    updated: MovieTable

    @classmethod
    def empty(cls) -> Overlay:
        return cls(MovieTable.empty(), MovieTable.empty())

    def __len__(self) -> int:
        return len(self.added) + len(self.updated)

    @property
    def movies(self) -> MovieTable:
        """Every movie of the overlay, sorted by id: what `Scorer.with_catalog` takes."""
        return self.added.merged(self.updated) if len(self.updated) else self.added

    def upserted(self, movies: MovieTable, trained_ids: IntArray) -> Overlay:
        """This overlay with `movies` applied (a movie given again replaces its earlier entry): those in
        `trained_ids` (the model's trained catalog) are metadata updates, the others added movies."""
        trained = np.isin(movies.movie_ids, trained_ids)
        added = self.added.merged(_select(movies, ~trained)) if (~trained).any() else self.added
        updated = self.updated.merged(_select(movies, trained)) if trained.any() else self.updated
        return Overlay(added, updated)

    def rebased(self, trained_ids: IntArray) -> tuple[Overlay, Rebase]:
        """This overlay against a model trained on `trained_ids`: added movies it was trained on are dropped
        (superseded), updates of movies it was not trained on become added movies."""
        superseded = self.added.movie_ids[np.isin(self.added.movie_ids, trained_ids)]
        orphan_mask = ~np.isin(self.updated.movie_ids, trained_ids)
        orphaned = self.updated.movie_ids[orphan_mask]
        change = Rebase(superseded, orphaned)
        if not change.changed:
            return self, change
        added = self.added.without(superseded) if superseded.size else self.added
        if orphaned.size:
            added = added.merged(_select(self.updated, orphan_mask))
        updated = self.updated.without(orphaned) if orphaned.size else self.updated
        return Overlay(added, updated), change

    # -- JSON ---------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def rows(t: MovieTable) -> list[dict[str, Any]]:
            return [
                {"movie_id": int(i), "title": title, "year": int(y), "genres": list(g)}
                for i, title, y, g in zip(t.movie_ids.tolist(), t.titles, t.years.tolist(), t.genres, strict=True)
            ]

        return {"format": FORMAT, "format_version": FORMAT_VERSION, "added": rows(self.added), "updated": rows(self.updated)}

    @classmethod
    def from_json(cls, data: Any) -> Overlay:
        """Parse and validate (as UpsertMovies validates a request); ValueError naming the entry if wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a catalog overlay (format {found!r}, expected {FORMAT!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format_version {data.get('format_version')!r} is not supported (this movierec reads {FORMAT_VERSION})"
            )
        parts = {name: _table(data.get(name, []), name) for name in ("added", "updated")}
        both = np.intersect1d(parts["added"].movie_ids, parts["updated"].movie_ids)
        if both.size:
            raise ValueError(f"movie id {int(both[0])} is both in 'added' and in 'updated'")
        return cls(parts["added"], parts["updated"])


def _table(rows: Any, name: str) -> MovieTable:
    if not isinstance(rows, list):
        raise ValueError(f"{name}: expected a list of movies, got {type(rows).__name__}")
    if not rows:
        return MovieTable.empty()
    for i, r in enumerate(rows):
        ok = (
            isinstance(r, dict)
            and isinstance(r.get("movie_id"), int)
            and isinstance(r.get("title"), str)
            and isinstance(r.get("year", 0), int)
            and isinstance(r.get("genres", []), list)
            and all(isinstance(g, str) for g in r.get("genres", []))
        )
        if not ok:
            raise ValueError(
                f"{name}[{i}]: expected an object with movie_id (integer), title (string), year (integer) and "
                "genres (list of strings)"
            )
    try:
        table = v.movie_table(
            np.array([r["movie_id"] for r in rows], dtype=np.int64),
            np.array([r["title"] for r in rows], dtype=object),
            np.array([r.get("year", 0) for r in rows], dtype=np.int64),
            [list(r.get("genres", [])) for r in rows],
            len(rows),
            name,
        )
    except (RequestError, OverflowError) as exc:
        raise ValueError(exc.message if isinstance(exc, RequestError) else f"{name}: {exc}") from None
    return MovieTable.empty().merged(table)  # sorted by id


Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode) of the file; None: no file


class OverlayFile:
    """Where an overlay is kept: a JSON file, or nowhere (`path` None: in memory only, as in tests).

    Several worker processes (`serve --workers N`) share one file: a change is made under an exclusive
    `flock` of the sibling `<file>.lock` (read the file, merge, write), so no upsert is lost, and each worker
    re-applies the file when its `stamp` changes."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    def __repr__(self) -> str:
        return f"OverlayFile({str(self.path) if self.path else 'in memory'})"

    def load(self) -> Overlay:
        """The stored overlay; empty when there is no file yet. OverlayError naming the file if it is unusable."""
        if self.path is None or not self.path.exists():
            return Overlay.empty()
        try:
            text = self.path.read_text(encoding="utf-8")
            return Overlay.from_json(json.loads(text))
        except OSError as exc:
            problem = f"cannot read ({exc.strerror or exc})"
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = f"not valid JSON ({exc})"
        except ValueError as exc:
            problem = str(exc)
        raise OverlayError(
            f"catalog overlay {self.path}: {problem}; fix the file or move it away (the server then starts "
            "without the movies added while serving)"
        )

    def save(self, overlay: Overlay) -> None:
        """Replace the file atomically with `overlay` (OSError if it cannot be written; the old file stays)."""
        if self.path is None:
            return
        path = self.path
        data = json.dumps(overlay.to_json(), indent=1, ensure_ascii=False).encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    def stamp(self) -> Stamp:
        """What identifies the file's current content (it is only ever replaced whole, by rename)."""
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive inter-process lock of this file (blocking; a no-op in memory)."""
        fd = -1
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:  # a directory that cannot be written: no file can be saved there either
                fd = -1
        if fd < 0:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def writable(self) -> bool:
        """Whether `save` can be expected to work (the directory exists, or can be made, and is writable)."""
        if self.path is None:
            return True
        d = self.path.parent
        while not d.exists() and d != d.parent:
            d = d.parent
        return os.access(d, os.W_OK | os.X_OK)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
