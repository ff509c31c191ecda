"""Sparse rating storage: raw-id <-> dense-index maps and a CSR rating matrix.

Ratings are never held as a dense users x movies matrix of a whole data set (ml-25m would be 38 GB);
`Csr.rows(...)` gathers a batch of rows and `Csr.densify(...)` turns only that batch into a dense array.
Everything here is numpy only: the server, the trainer and the bulk scorers share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class IdMap:
    """Maps raw ids (as in the input files) to dense indices 0..n-1 and back: `raw[i]` is the id of index i.

    `raw` is unique. A map built from data (`from_ids`) is sorted, so the dense index of a raw id is its
    position (vectorized searchsorted); an extended map (`extended`: trained movies, then movies added after
    training) is not, and looks ids up through a sorting permutation computed once.
    """

    raw: IntArray
    _sorter: IntArray | None = field(default=None, init=False, repr=False, compare=False)
    _ordered: IntArray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = self.raw
        if raw.size > 1 and not bool((raw[1:] > raw[:-1]).all()):
            sorter = np.argsort(raw, kind="stable")
            object.__setattr__(self, "_sorter", sorter)
            object.__setattr__(self, "_ordered", raw[sorter])

    @classmethod
    def from_ids(cls, ids: npt.ArrayLike) -> IdMap:
        return cls(np.unique(np.asarray(ids, dtype=np.int64)))

    def extended(self, ids: npt.ArrayLike) -> IdMap:
        """This map with `ids` (unique, none known here) appended as indices len(self).. in the given order."""
        return IdMap(np.concatenate([self.raw, np.asarray(ids, dtype=np.int64)]))

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    def to_index(self, ids: npt.ArrayLike) -> IntArray:
        """Dense indices of `ids`; -1 for ids this map does not know."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self) == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        ordered = self.raw if self._ordered is None else self._ordered
        pos = np.searchsorted(ordered, ids)
        pos_clipped = np.minimum(pos, len(self) - 1)
        known = ordered[pos_clipped] == ids
        index = pos_clipped if self._sorter is None else self._sorter[pos_clipped]
        return np.where(known, index, -1).astype(np.int64)

    def to_raw(self, index: npt.ArrayLike) -> IntArray:
        return self.raw[np.asarray(index, dtype=np.int64)]


@dataclass(frozen=True)
class Csr:
    """A compressed-sparse-row matrix of ratings (rows = users or vectors, columns = dense item indices)."""

    indptr: IntArray  # (n_rows + 1,)
    indices: IntArray  # (nnz,) column indices, sorted within each row
    values: FloatArray  # (nnz,)
    n_cols: int

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    @classmethod
    def from_coo(cls, rows: npt.ArrayLike, cols: npt.ArrayLike, values: npt.ArrayLike, n_rows: int, n_cols: int) -> Csr:
        """Build from (row, col, value) triplets; duplicates are not merged (callers reject them)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        vals = np.asarray(values, dtype=np.float32)
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=n_rows) if rows.size else np.zeros(n_rows, dtype=np.int64)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, cols[order], vals[order], int(n_cols))

    @classmethod
    def empty(cls, n_rows: int, n_cols: int) -> Csr:
        return cls(np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), int(n_cols))

    def row_lengths(self) -> IntArray:
        return np.diff(self.indptr)

    def to_coo(self) -> tuple[IntArray, IntArray, FloatArray]:
        rows = np.repeat(np.arange(self.n_rows, dtype=np.int64), self.row_lengths())
        return rows, self.indices, self.values

    def rows(self, which: npt.ArrayLike) -> Csr:
        """The sub-matrix of the given rows, in the given order (vectorized gather, no loop per row)."""
        which = np.asarray(which, dtype=np.int64)
        lengths = self.indptr[which + 1] - self.indptr[which]
        indptr = np.zeros(which.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        offsets = self.positions(which)
        return Csr(indptr, self.indices[offsets], self.values[offsets], self.n_cols)

    def positions(self, which: npt.ArrayLike) -> IntArray:
        """Positions in `indices`/`values` of every entry of the given rows, in row order."""
        which = np.asarray(which, dtype=np.int64)
        starts = self.indptr[which]
        lengths = self.indptr[which + 1] - starts
        out_starts = np.zeros_like(lengths)
        np.cumsum(lengths[:-1], out=out_starts[1:])
        total = int(lengths.sum())
        return np.repeat(starts - out_starts, lengths) + np.arange(total, dtype=np.int64)

    def densify(self, out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """A dense (n_rows, n_cols) float32 array with zeros where unrated."""
        dense = np.zeros((self.n_rows, self.n_cols), dtype=np.float32) if out is None else out
        r, c, v = self.to_coo()
        dense[r, c] = v
        return dense

    def transpose(self) -> Csr:
        r, c, v = self.to_coo()
        return Csr.from_coo(c, r, v, self.n_cols, self.n_rows)

    def row_means(self, default: float = 0.0) -> FloatArray:
        lengths = self.row_lengths()
        rows, _, values = self.to_coo()
        sums = np.bincount(rows, weights=values, minlength=self.n_rows)
        means = np.where(lengths > 0, sums / np.maximum(lengths, 1), default)
        return means.astype(np.float32)
