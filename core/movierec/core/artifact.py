"""The model artifact: one self-describing directory, written atomically, verified on load.

Layout (all plain formats; nothing is pickled):
    manifest.json        the typed `Manifest`: format version, content version, data set, data fingerprint,
                         the rating scale of the training data, the side-information schema, the catalog
                         spec, model roles with their configs, training settings and time, library versions,
                         and the sha256 of every other file
    model-<role>.pt      state_dict per model role ("rating", "ranking"), loaded with torch.load(weights_only=True)
    users.npy items.npy  raw ids in dense-index order (the id maps)
    history.npz          the training ratings as CSR (indptr, indices, values), to score known users
    catalog.parquet      movie id, title, year, genres
    profiles.parquet     (optional) the known users' profiles: user, age, gender, occupation, zip
    metrics.json         evaluation results
    *.png                plots (learning curves), listed in the manifest too

The artifact version is a content hash, so two identical trainings produce the same version and any change
of weights or data produces a new one.

`manifest.json` is parsed in one place, `Manifest.from_json` (through `read_manifest`), into frozen
dataclasses; a manifest of an older format version is first brought up to date by the migrations in
`_MIGRATIONS`, one version step at a time, and one that cannot be migrated is refused with a message that
says to retrain.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from movierec.core.config import ModelConfig
from movierec.core.features import FeatureSchema
from movierec.core.sparse import Csr, IdMap

FORMAT = "movierec-artifact"
FORMAT_VERSION = 2  # 2: rating_scale, features, catalog (version 1 artifacts load through _migrate_v1)
MANIFEST = "manifest.json"
CATALOG_FILE = "catalog.parquet"
HISTORY_FILE = "history.npz"
PROFILES_FILE = "profiles.parquet"  # optional: the known users' profiles (user, age, gender, occupation, zip)

# Candidate rating steps, coarsest first: the inferred step is the first one every rating lies on.
_STEPS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.2, 0.1, 0.05, 0.01)
_GRID_TOLERANCE = 1e-4  # in units of the step: float32 ratings (3.5 is exact, 0.1 is not)


class ArtifactError(ValueError):
    """A missing, corrupt or incompatible artifact; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------ manifest types


@dataclass(frozen=True)
class RatingScale:
    """The ratings a model was trained on: values in [min, max] on the grid min + k * step.

    `step` 0 means any value in [min, max] (continuous ratings). MovieLens ml-100k / ml-1m use 1..5 step 1;
    ml-10m, ml-20m, ml-25m and ml-latest use 0.5..5 step 0.5.
    """

    min: float
    max: float
    step: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min) and math.isfinite(self.max) and math.isfinite(self.step)):
            raise ValueError(f"rating scale {self.min}..{self.max} step {self.step}: values must be finite")
        if self.min > self.max:
            raise ValueError(f"rating scale {self.min}..{self.max}: min is above max")
        if self.step < 0:
            raise ValueError(f"rating scale step {self.step} is negative")
        if self.step > 0 and not _on_grid(np.array([self.max - self.min]), self.step)[0]:
            raise ValueError(f"rating scale {self}: max is not on the grid min + k * step")

    @classmethod
    def infer(cls, ratings: npt.ArrayLike) -> RatingScale:
        """The scale of observed ratings: their min and max, and the coarsest step of `_STEPS` (1, 0.5,
        0.25, ...) on which every rating lies counted from the min; 0 (continuous) when none fits."""
        # distinct values first (a hash pass, not a sort: ml-25m's 25M ratings hold 10 distinct values)
        values = np.asarray(pd.unique(np.asarray(ratings).ravel()), dtype=np.float64)
        if values.size == 0:
            raise ValueError("cannot infer a rating scale from no ratings")
        if not np.isfinite(values).all():
            raise ValueError("cannot infer a rating scale: some ratings are not finite")
        low, high = float(values.min()), float(values.max())
        offsets = values - low
        step = next((s for s in _STEPS if _on_grid(offsets, s).all()), 0.0)
        return cls(_snap(low, step), _snap(high, step), step)

    def contains(self, ratings: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Per rating: finite, within [min, max] and on the step grid (vectorized)."""
        values = np.asarray(ratings, dtype=np.float64)
        slack = _GRID_TOLERANCE * (self.step or 1.0)
        ok = np.isfinite(values) & (values >= self.min - slack) & (values <= self.max + slack)
        if self.step > 0:
            ok &= _on_grid(np.where(ok, values - self.min, 0.0), self.step)
        return ok

    def clip(self, predictions: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Predictions clipped into [min, max] (predictions stay continuous: they are not snapped)."""
        return np.clip(np.asarray(predictions, dtype=np.float32), self.min, self.max).astype(np.float32)

    @property
    def midpoint(self) -> float:
        return (self.min + self.max) / 2

    def __str__(self) -> str:
        span = f"{self.min:g}..{self.max:g}"
        return f"{span} step {self.step:g}" if self.step > 0 else f"{span} (any value)"

    def to_dict(self) -> dict[str, float]:
        return {"min": self.min, "max": self.max, "step": self.step}


def _on_grid(offsets: npt.NDArray[np.float64], step: float) -> npt.NDArray[np.bool_]:
    k = offsets / step
    return np.asarray(np.abs(k - np.rint(k)) <= _GRID_TOLERANCE)


def _snap(value: float, step: float) -> float:
    """float32 ratings (4.1 stored as 4.099999904...) written back as the decimal the data meant."""
    digits = max(0, -math.floor(math.log10(step))) + 1 if step > 0 else 6
    return round(value, digits)


@dataclass(frozen=True)
class CatalogSpec:
    """Where the catalog lives and how much of it the models were trained on.

    The first `n_trained` movies of the catalog are the models' columns (the dense item index); movies
    added after training (a cold-start overlay) come after them and are not model columns.
    """

    file: str
    n_trained: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "n_trained": self.n_trained}


@dataclass(frozen=True)
class ModelSpec:
    """One model role in the manifest: its config as stored (parsed by ModelConfig) and its weights file."""

    config: dict[str, Any]
    weights: str

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "weights": self.weights}


@dataclass(frozen=True)
class Manifest:
    """manifest.json, parsed and checked once (`Manifest.from_json`).

    `training` is the trainer's record of how each role was fitted (settings, seconds, chosen epochs) and
    `provenance` the other keys the trainer recorded (preset, what Recommend ranks by): both free-form and
    only reported, never interpreted by the server.
    """

    version: str
    created_at: str
    dataset: str
    data_fingerprint: str
    n_users: int
    n_items: int
    n_ratings: int
    rating_scale: RatingScale
    features: FeatureSchema
    catalog: CatalogSpec
    models: Mapping[str, ModelSpec]
    files: Mapping[str, str]  # file name -> sha256
    library_versions: Mapping[str, str] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            **dict(self.provenance),
            "format": FORMAT,
            "format_version": self.format_version,
            "version": self.version,
            "created_at": self.created_at,
            "dataset": self.dataset,
            "data_fingerprint": self.data_fingerprint,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_ratings": self.n_ratings,
            "rating_scale": self.rating_scale.to_dict(),
            "features": self.features.to_dict(),
            "catalog": self.catalog.to_dict(),
            "models": {role: spec.to_dict() for role, spec in self.models.items()},
            "library_versions": dict(self.library_versions),
            "training": dict(self.training),
            "files": dict(self.files),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: Path) -> Manifest:
        """Parse a current-version manifest; ArtifactError naming `where` and the field for anything wrong."""
        data = dict(raw)
        try:
            scale = data.pop("rating_scale")
            features = data.pop("features")
            catalog = data.pop("catalog")
            models = data.pop("models")
            files = data.pop("files")
            manifest = cls(
                version=_typed(data.pop("version"), str, "version"),
                created_at=_typed(data.pop("created_at", ""), str, "created_at"),
                dataset=_typed(data.pop("dataset", ""), str, "dataset"),
                data_fingerprint=_typed(data.pop("data_fingerprint", ""), str, "data_fingerprint"),
                n_users=_typed(data.pop("n_users"), int, "n_users"),
                n_items=_typed(data.pop("n_items"), int, "n_items"),
                n_ratings=_typed(data.pop("n_ratings"), int, "n_ratings"),
                rating_scale=RatingScale(float(scale["min"]), float(scale["max"]), float(scale["step"])),
                features=FeatureSchema(
                    tuple(_typed(f, str, "features") for f in features["user_features"]),
                    tuple(_typed(f, str, "features") for f in features["item_features"]),
                ),
                catalog=CatalogSpec(_typed(catalog["file"], str, "catalog.file"),
                                    _typed(catalog["n_trained"], int, "catalog.n_trained")),  # fmt: skip
                models={
                    _typed(role, str, "models"): ModelSpec(_typed(m["config"], dict, f"models.{role}.config"),
                                                           _typed(m["weights"], str, f"models.{role}.weights"))
                    for role, m in _typed(models, dict, "models").items()
                },  # fmt: skip
                files={str(n): _typed(d, str, f"files.{n}") for n, d in _typed(files, dict, "files").items()},
                library_versions=dict(_typed(data.pop("library_versions", {}), dict, "library_versions")),
                training=dict(_typed(data.pop("training", {}), dict, "training")),
                format_version=_typed(data.pop("format_version"), int, "format_version"),
                provenance={k: v for k, v in data.items() if k != "format"},
            )
        except KeyError as exc:
            raise ArtifactError(f"{where}: manifest lacks field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: invalid manifest ({exc})") from None
        if manifest.catalog.n_trained != manifest.n_items:
            raise ArtifactError(
                f"{where}: catalog.n_trained is {manifest.catalog.n_trained} but the models have "
                f"{manifest.n_items} movies"
            )
        return manifest

    def meta(self) -> dict[str, Any]:
        """The trainer-facing record of `Artifact.meta`: data set, fingerprint, creation time, training,
        and the provenance keys."""
        return {
            **dict(self.provenance),
            "dataset": self.dataset,
            "data_fingerprint": self.data_fingerprint,
            "created_at": self.created_at,
            "training": dict(self.training),
        }


def _typed(value: Any, kind: type, name: str) -> Any:
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise TypeError(f"field {name!r} must be {kind.__name__}, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------------ artifact


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
    rating_scale: RatingScale = field(kw_only=True)  # of the training data (RatingScale.infer)
    features: FeatureSchema = field(default_factory=FeatureSchema, kw_only=True)
    profiles: pd.DataFrame | None = field(default=None, kw_only=True)  # user, age, gender, occupation, zip
    manifest: Manifest | None = field(default=None, kw_only=True)  # set by save_artifact / load_artifact


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


# Keys of Artifact.meta that the manifest owns itself (typed fields or computed at save time).
_OWN_KEYS = frozenset(
    ("format", "format_version", "version", "created_at", "n_users", "n_items", "n_ratings", "rating_scale",
     "features", "catalog", "models", "library_versions", "files", "dataset", "data_fingerprint", "training")
)  # fmt: skip


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

        models: dict[str, ModelSpec] = {}
        for role, entry in artifact.models.items():
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu().contiguous() for k, v in entry.state.items()}, buf)
            put(f"model-{role}.pt", buf.getvalue())
            models[role] = ModelSpec(entry.config.to_dict(), f"model-{role}.pt")
        for name, arr in (("users.npy", artifact.users.raw), ("items.npy", artifact.items.raw)):
            buf = io.BytesIO()
            np.save(buf, np.asarray(arr, dtype=np.int64), allow_pickle=False)
            put(name, buf.getvalue())
        buf = io.BytesIO()
        h = artifact.history
        np.savez(buf, indptr=h.indptr, indices=h.indices, values=h.values, n_cols=np.array([h.n_cols]))
        put(HISTORY_FILE, buf.getvalue())
        buf = io.BytesIO()
        artifact.catalog.to_parquet(buf, index=False)
        put(CATALOG_FILE, buf.getvalue())
        if artifact.profiles is not None:
            buf = io.BytesIO()
            artifact.profiles.to_parquet(buf, index=False)
            put(PROFILES_FILE, buf.getvalue())
        put("metrics.json", json.dumps(artifact.metrics, indent=2, sort_keys=True).encode())
        for name, data in artifact.plots.items():
            put(name, data)
        version = hashlib.sha256(
            "\n".join(f"{n}:{files[n]}" for n in sorted(files) if not n.endswith(".png")).encode()
        ).hexdigest()[:12]
        meta = artifact.meta
        manifest = Manifest(
            version=version,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            dataset=str(meta.get("dataset", "")),
            data_fingerprint=str(meta.get("data_fingerprint", "")),
            n_users=len(artifact.users),
            n_items=len(artifact.items),
            n_ratings=artifact.history.nnz,
            rating_scale=artifact.rating_scale,
            features=artifact.features,
            catalog=CatalogSpec(CATALOG_FILE, len(artifact.items)),
            models=models,
            files=files,
            library_versions=library_versions(),
            training=dict(meta.get("training", {})),
            provenance={k: v for k, v in meta.items() if k not in _OWN_KEYS},
        )
        _write_bytes(tmp / MANIFEST, json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode())
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    artifact.version = version
    artifact.path = out
    artifact.manifest = manifest
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


# ---------------------------------------------------------------------------------------------- migrations


def _retrain(root: Path, problem: str) -> ArtifactError:
    return ArtifactError(f"{root / MANIFEST}: {problem}; retrain it with `movierec train --out {root}`")


def _migrate_v1(raw: dict[str, Any], root: Path) -> dict[str, Any]:
    """Version 1 -> 2: add rating_scale, features and catalog.

    Version 1 recorded no rating scale. It is derived from the stored training ratings (history.npz,
    checked against its sha256 first) rather than assumed: ml-100k / ml-1m artifacts come out 1..5 step 1.
    """
    files = raw.get("files")
    digest = files.get(HISTORY_FILE) if isinstance(files, dict) else None
    hpath = root / HISTORY_FILE
    if not isinstance(digest, str) or not hpath.is_file():
        raise _retrain(root, f"a format version 1 artifact without {HISTORY_FILE} cannot be migrated")
    if _sha256(hpath) != digest:
        raise ArtifactError(f"{hpath}: checksum mismatch (the file is corrupt or was modified)")
    try:
        with np.load(hpath, allow_pickle=False) as z:
            scale = RatingScale.infer(z["values"])
    except Exception as exc:  # unreadable or empty history
        raise _retrain(root, f"cannot derive the rating scale of this version 1 artifact ({exc})") from None
    n_items = raw.get("n_items")
    return {
        **raw,
        "format_version": 2,
        "rating_scale": scale.to_dict(),
        "features": FeatureSchema().to_dict(),
        "catalog": CatalogSpec(CATALOG_FILE, n_items if isinstance(n_items, int) else -1).to_dict(),
    }


# format version -> the function that turns a manifest of that version into one of the next version
_MIGRATIONS: dict[int, Callable[[dict[str, Any], Path], dict[str, Any]]] = {1: _migrate_v1}


def read_manifest(path: str | Path) -> Manifest:
    """The artifact's manifest, migrated to the current format version and parsed; ArtifactError if not."""
    root = Path(path)
    _recover(root)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise ArtifactError(f"{root}: no such artifact directory (train one with `movierec train --out {root}`)")
    if not mpath.is_file():
        raise ArtifactError(f"{root}: not an artifact ({MANIFEST} missing)")
    try:
        raw = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: corrupt manifest ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ArtifactError(f"{mpath}: not a movierec artifact (format {found!r})")
    version = raw.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: artifact format version {version} is newer than this movierec reads "
            f"(version {FORMAT_VERSION}); upgrade movierec or retrain with this one"
        )
    while version != FORMAT_VERSION:
        migrate = _MIGRATIONS.get(version) if isinstance(version, int) else None
        if migrate is None:
            raise _retrain(
                root, f"artifact format version {version!r} is not supported (this movierec reads version "
                f"{FORMAT_VERSION} and migrates {', '.join(map(str, sorted(_MIGRATIONS)))})"
            )  # fmt: skip
        raw = migrate(raw, root)
        version = raw["format_version"]
    return Manifest.from_json(raw, mpath)


def load_artifact(path: str | Path, *, verify: bool = True) -> Artifact:
    """Load and verify an artifact. Raises ArtifactError naming the file for anything corrupt or mismatched."""
    root = Path(path)
    manifest = read_manifest(root)
    for name, digest in manifest.files.items():
        fpath = root / name
        if not fpath.is_file():
            raise ArtifactError(f"{fpath}: missing (listed in the manifest)")
        if verify and _sha256(fpath) != digest:
            raise ArtifactError(f"{fpath}: checksum mismatch (the file is corrupt or was modified)")
    try:
        users = IdMap(np.load(root / "users.npy", allow_pickle=False))
        items = IdMap(np.load(root / "items.npy", allow_pickle=False))
        with np.load(root / HISTORY_FILE, allow_pickle=False) as z:
            history = Csr(z["indptr"], z["indices"], z["values"], int(z["n_cols"][0]))
        catalog = pd.read_parquet(root / manifest.catalog.file)
        profiles = pd.read_parquet(root / PROFILES_FILE) if PROFILES_FILE in manifest.files else None
        metrics = json.loads((root / "metrics.json").read_text())
        models: dict[str, ModelEntry] = {}
        for role, spec in manifest.models.items():
            config = ModelConfig.from_dict(spec.config)
            state = torch.load(root / spec.weights, map_location="cpu", weights_only=True)
            models[role] = ModelEntry(config, state)
    except ArtifactError:
        raise
    except Exception as exc:  # truncated or malformed files of any kind
        raise ArtifactError(f"{root}: cannot read artifact ({type(exc).__name__}: {exc})") from None
    if history.n_rows != len(users) or history.n_cols != len(items):
        raise ArtifactError(
            f"{root}: history is {history.n_rows}x{history.n_cols} but the id maps are {len(users)}x{len(items)}"
        )
    if manifest.n_items != len(items) or manifest.n_users != len(users):
        raise ArtifactError(
            f"{root}: the manifest says {manifest.n_users} users x {manifest.n_items} movies but the id maps "
            f"hold {len(users)} x {len(items)}"
        )
    for role, entry in models.items():
        if entry.config.n_items != len(items):
            raise ArtifactError(
                f"{root}: model '{role}' expects {entry.config.n_items} movies but the artifact has {len(items)}"
            )
    plots = {n: b"" for n in manifest.files if n.endswith(".png")}
    return Artifact(
        models, users, items, history, catalog, metrics, manifest.meta(), plots, manifest.version, root,
        rating_scale=manifest.rating_scale, features=manifest.features, manifest=manifest, profiles=profiles,
    )  # fmt: skip
