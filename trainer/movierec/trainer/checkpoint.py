"""Training checkpoints: everything `fit` needs to continue a killed run from the last finished epoch.

A checkpoint is one `.pt` file holding a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with `torch.load(weights_only=True)` (nothing is pickled): model and optimizer state, the epoch, the
early-stopping state (best score, epochs since the best, the best weights), the history so far, and the RNG
states (the shuffling generator, and the torch RNG of every rank, which drives dropout). It is written to a
temp file in the same directory, fsynced and renamed over the previous one, so a crash at any point leaves
the previous checkpoint or the new one, never a torn file. In a data-parallel run only rank 0 writes.

A checkpoint also records a key of the run (model and training configs, data shape and a checksum of the
training ratings); resuming with a different configuration or data set is refused instead of silently mixing
two trainings. `epochs` and `device` are not part of the key: a resumed run may train for longer or move to
another device.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from movierec.core.sparse import Csr
from movierec.trainer.config import ModelConfig, TrainConfig

CHECKPOINT_FORMAT = "movierec-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class CheckpointSpec:
    """Where `fit` checkpoints (one file per model) and whether it first continues from that file."""

    path: Path
    resume: bool = False

    def member(self, name: str) -> CheckpointSpec:
        """A sibling file for a sub-model (an ensemble member)."""
        return CheckpointSpec(self.path.with_name(f"{self.path.stem}-{name}{self.path.suffix}"), self.resume)


def default_checkpoint_dir(out: str | Path) -> Path:
    """`<out>.ckpt/` next to the artifact directory."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def run_key(train: Csr, model_config: ModelConfig, train_config: TrainConfig) -> str:
    """A digest of what makes two trainings the same run (configs minus epochs/device, and the data)."""
    tcfg = {k: v for k, v in train_config.to_dict().items() if k not in ("epochs", "device")}
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_config.to_dict(), "train": tcfg}, sort_keys=True, default=str).encode())
    h.update(np.asarray([train.n_rows, train.n_cols, train.nnz], dtype=np.int64).tobytes())
    for arr in (train.indptr, train.indices, train.values):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: temp file in the same directory, fsync, os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, key: str) -> dict[str, Any] | None:
    """The checkpoint at `path` (CPU tensors), None when there is none; ValueError if it is of another run."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a movierec checkpoint; delete it to start over")
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {state.get('format_version')} is not supported")
    if state.get("key") != key:
        raise ValueError(
            f"{path}: checkpoint is of another training (different configuration or data); "
            "delete it or drop --resume to start over"
        )
    return state


def remove_checkpoints(directory: str | Path, names: Iterable[str]) -> None:
    """Delete the checkpoints `<name>.pt` (and their members' `<name>-*.pt`) of a finished training, and the
    directory if that leaves it empty; other files there are left alone."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for name in names:
        # with the temp files a killed writer may have left (`.<file>.tmp-*`)
        for f in [directory / f"{name}.pt", *directory.glob(f"{name}-*.pt"), *directory.glob(f".{name}*.pt.tmp-*")]:
            f.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # holds other files: leave it
        directory.rmdir()
