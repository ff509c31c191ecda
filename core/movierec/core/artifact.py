"""The model artifact: one self-describing directory, written atomically, verified on load.

Layout (all plain formats; nothing is pickled):
    manifest.json        format/version, data set, data fingerprint, model roles with their configs, training
                         settings and time, library versions, and the sha256 of every other file
    model-<role>.pt      state_dict per model role ("rating", "ranking"), loaded with torch.load(weights_only=True)
    users.npy items.npy  raw ids in dense-index order (the id maps)
    history.npz          the training ratings as CSR (indptr, indices, values), to score known users
    catalog.parquet      movie id, title, year, genres
    metrics.json         evaluation results
    *.png                plots (learning curves), listed in the manifest too

The artifact version is a content hash, so two identical trainings produce the same version and any change
of weights or data produces a new one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from movierec.core.config import ModelConfig
from movierec.core.sparse import Csr, IdMap

FORMAT = "movierec-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """A missing, corrupt or incompatible artifact; the message names the file and the problem."""


@dataclass
class ModelEntry:
    config: ModelConfig
    state: dict[str, torch.Tensor]


@dataclass
class Artifact:
    models: dict[str, ModelEntry]  # role ("rating", "ranking") -> model
    users: IdMap
    items: IdMap
    history: Csr  # n_users x n_items, dense indices
    catalog: pd.DataFrame  # item, title, year, genres
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # dataset, data_fingerprint, training, ...
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    version: str = ""
    path: Path | None = None


def data_fingerprint(users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> str:
    """sha256 over the (user, item, rating) triplets in sorted order: independent of file order and format."""
    order = np.lexsort((items, users))
    h = hashlib.sha256()
    for arr, dtype in ((users, np.int64), (items, np.int64), (ratings, np.float32)):
        h.update(np.ascontiguousarray(np.asarray(arr)[order], dtype=dtype).tobytes())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_artifact(artifact: Artifact, out_dir: str | Path) -> str:
    """Write `artifact` to `out_dir` atomically (temp dir + rename); returns the artifact version.

    An existing artifact at `out_dir` is replaced only once the new one is complete; a crash at any point
    leaves either the old or the new artifact loadable (`load_artifact` recovers the old one if needed).
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        files: dict[str, str] = {}

        def put(name: str, data: bytes) -> None:
            _write_bytes(tmp / name, data)
            files[name] = hashlib.sha256(data).hexdigest()

        models_meta: dict[str, Any] = {}
        for role, entry in artifact.models.items():
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu().contiguous() for k, v in entry.state.items()}, buf)
            put(f"model-{role}.pt", buf.getvalue())
            models_meta[role] = {"config": entry.config.to_dict(), "weights": f"model-{role}.pt"}
        for name, arr in (("users.npy", artifact.users.raw), ("items.npy", artifact.items.raw)):
            buf = io.BytesIO()
            np.save(buf, np.asarray(arr, dtype=np.int64), allow_pickle=False)
            put(name, buf.getvalue())
        buf = io.BytesIO()
        h = artifact.history
        np.savez(buf, indptr=h.indptr, indices=h.indices, values=h.values, n_cols=np.array([h.n_cols]))
        put("history.npz", buf.getvalue())
        buf = io.BytesIO()
        artifact.catalog.to_parquet(buf, index=False)
        put("catalog.parquet", buf.getvalue())
        put("metrics.json", json.dumps(artifact.metrics, indent=2, sort_keys=True).encode())
        for name, data in artifact.plots.items():
            put(name, data)
        version = hashlib.sha256(
            "\n".join(f"{n}:{files[n]}" for n in sorted(files) if not n.endswith(".png")).encode()
        ).hexdigest()[:12]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "n_users": len(artifact.users),
            "n_items": len(artifact.items),
            "n_ratings": artifact.history.nnz,
            "models": models_meta,
            "library_versions": library_versions(),
            **{k: v for k, v in artifact.meta.items() if k not in ("version", "files", "models")},
            "files": files,
        }
        _write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    artifact.version = version
    artifact.path = out
    return version


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.replace(out, old)  # a crash right here leaves `old`, which load_artifact recovers
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _recover(path: Path) -> None:
    """If a crash hit between the two renames of a replacement, put the previous artifact back."""
    if path.exists():
        return
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and (olds[-1] / MANIFEST).exists():
        os.replace(olds[-1], path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    root = Path(path)
    _recover(root)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise ArtifactError(f"{root}: no such artifact directory (train one with `movierec train --out {root}`)")
    if not mpath.is_file():
        raise ArtifactError(f"{root}: not an artifact ({MANIFEST} missing)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: corrupt manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: not a movierec artifact (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: artifact format version {manifest.get('format_version')} is not supported "
            f"(this movierec reads version {FORMAT_VERSION})"
        )
    return manifest


def load_artifact(path: str | Path, *, verify: bool = True) -> Artifact:
    """Load and verify an artifact. Raises ArtifactError naming the file for anything corrupt or mismatched."""
    root = Path(path)
    manifest = read_manifest(root)
    files: dict[str, str] = manifest.get("files", {})
    for name, digest in files.items():
        fpath = root / name
        if not fpath.is_file():
            raise ArtifactError(f"{fpath}: missing (listed in the manifest)")
        if verify and _sha256(fpath) != digest:
            raise ArtifactError(f"{fpath}: checksum mismatch (the file is corrupt or was modified)")
    try:
        users = IdMap(np.load(root / "users.npy", allow_pickle=False))
        items = IdMap(np.load(root / "items.npy", allow_pickle=False))
        with np.load(root / "history.npz", allow_pickle=False) as z:
            history = Csr(z["indptr"], z["indices"], z["values"], int(z["n_cols"][0]))
        catalog = pd.read_parquet(root / "catalog.parquet")
        metrics = json.loads((root / "metrics.json").read_text())
        models: dict[str, ModelEntry] = {}
        for role, meta in manifest["models"].items():
            config = ModelConfig.from_dict(meta["config"])
            state = torch.load(root / meta["weights"], map_location="cpu", weights_only=True)
            models[role] = ModelEntry(config, state)
    except ArtifactError:
        raise
    except Exception as exc:  # truncated or malformed files of any kind
        raise ArtifactError(f"{root}: cannot read artifact ({type(exc).__name__}: {exc})") from None
    if history.n_rows != len(users) or history.n_cols != len(items):
        raise ArtifactError(
            f"{root}: history is {history.n_rows}x{history.n_cols} but the id maps are {len(users)}x{len(items)}"
        )
    for role, entry in models.items():
        if entry.config.n_items != len(items):
            raise ArtifactError(
                f"{root}: model '{role}' expects {entry.config.n_items} movies but the artifact has {len(items)}"
            )
    meta = {k: v for k, v in manifest.items() if k not in ("files",)}
    plots = {n: b"" for n in files if n.endswith(".png")}
    return Artifact(models, users, items, history, catalog, metrics, meta, plots, manifest["version"], root)
