from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from movierec.core.artifact import (
    FORMAT_VERSION,
    ArtifactError,
    CatalogSpec,
    FeatureSchema,
    Manifest,
    RatingScale,
    load_artifact,
    read_manifest,
    save_artifact,
)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_round_trip(tiny_artifact: Path, tmp_path: Path) -> None:
    a = load_artifact(tiny_artifact)
    assert a.version and len(a.version) == 12
    assert a.meta["dataset"] == "synthetic-tiny"
    assert "test_rmse" in a.metrics and "data_fingerprint" in a.meta
    assert (tiny_artifact / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    # saving the loaded artifact again reproduces the same content version
    a.plots = {}
    again = save_artifact(a, tmp_path / "copy")
    b = load_artifact(tmp_path / "copy")
    assert again == a.version == b.version
    for role in a.models:
        for k, v in a.models[role].state.items():
            assert torch.equal(v, b.models[role].state[k])
    np.testing.assert_array_equal(a.history.values, b.history.values)


def test_weights_load_with_weights_only(tiny_artifact: Path) -> None:
    state = torch.load(tiny_artifact / "model-rating.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "model-rating.pt").write_bytes((d / "model-rating.pt").read_bytes()[:100]), "checksum"),
        (lambda d: (d / "users.npy").unlink(), "missing"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "corrupt manifest"),
        (lambda d: (d / "manifest.json").unlink(), "not an artifact"),
    ],
)
def test_corrupt_artifacts_are_refused(tiny_artifact: Path, tmp_path: Path, damage, message) -> None:
    d = _copy(tiny_artifact, tmp_path / "a")
    damage(d)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(d)


def test_incompatible_format_version_refused(tiny_artifact: Path, tmp_path: Path) -> None:
    d = _copy(tiny_artifact, tmp_path / "a")
    m = json.loads((d / "manifest.json").read_text())
    m["format_version"] = 999
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="format version 999"):
        load_artifact(d)


def test_mismatched_model_size_refused(tiny_artifact: Path, tmp_path: Path) -> None:
    a = load_artifact(tiny_artifact)
    a.items = type(a.items)(a.items.raw[:-1])
    a.history = type(a.history)(a.history.indptr, a.history.indices, a.history.values, a.history.n_cols - 1)
    with pytest.raises(ArtifactError):
        save_artifact(a, tmp_path / "bad")
        load_artifact(tmp_path / "bad")


def test_replacement_is_atomic_and_recovers_after_crash(tiny_artifact: Path, tmp_path: Path) -> None:
    a = load_artifact(tiny_artifact)
    out = tmp_path / "model"
    save_artifact(a, out)
    save_artifact(a, out)  # replacing an existing artifact
    assert load_artifact(out).version == a.version
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dirs left behind"
    # simulate a crash between the two renames: only the moved-aside old artifact exists
    os.replace(out, tmp_path / ".model.old-crash")
    assert load_artifact(out).version == a.version


def test_manifest_round_trip_is_typed(tiny_artifact: Path, tmp_path: Path) -> None:
    a = load_artifact(tiny_artifact)
    m = read_manifest(tiny_artifact)
    assert a.manifest == m and m.format_version == FORMAT_VERSION == 2
    assert m.rating_scale == a.rating_scale == RatingScale(1.0, 5.0, 1.0)  # the tiny data: 1..5 stars
    assert m.features == FeatureSchema() and m.features.user_features == () == m.features.item_features
    assert m.catalog == CatalogSpec("catalog.parquet", len(a.items)) and m.n_items == len(a.items)
    assert m.dataset == "synthetic-tiny" and m.provenance["preset"] == "classic" and "seconds" in m.training
    a.plots = {}
    a.rating_scale = RatingScale(0.5, 5.0, 0.5)
    a.features = FeatureSchema(("age",), ("genres", "year"))
    save_artifact(a, tmp_path / "copy")
    b = read_manifest(tmp_path / "copy")
    assert b.rating_scale == RatingScale(0.5, 5.0, 0.5) and b.features == FeatureSchema(("age",), ("genres", "year"))
    assert Manifest.from_json(b.to_json(), tmp_path) == b
    assert load_artifact(tmp_path / "copy").rating_scale == RatingScale(0.5, 5.0, 0.5)


def _as_version_1(d: Path) -> dict:
    """Rewrite d's manifest the way format version 1 wrote it (no rating_scale, features, catalog)."""
    m = json.loads((d / "manifest.json").read_text())
    for key in ("rating_scale", "features", "catalog"):
        del m[key]
    m["format_version"] = 1
    (d / "manifest.json").write_text(json.dumps(m))
    return m


def test_version_1_manifest_migrates_with_the_scale_of_its_history(tiny_artifact: Path, tmp_path: Path) -> None:
    d = _copy(tiny_artifact, tmp_path / "v1")
    _as_version_1(d)
    a = load_artifact(d)
    assert a.manifest is not None and a.manifest.format_version == FORMAT_VERSION
    assert a.rating_scale == RatingScale.infer(a.history.values) == RatingScale(1.0, 5.0, 1.0)
    assert a.manifest.catalog.n_trained == len(a.items) and a.features == FeatureSchema()
    assert a.version == load_artifact(tiny_artifact).version  # same files, same content version


def test_unmigratable_manifests_are_refused_with_retrain(tiny_artifact: Path, tmp_path: Path) -> None:
    d = _copy(tiny_artifact, tmp_path / "v0")
    m = _as_version_1(d)
    m["format_version"] = 0
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=r"format version 0 is not supported.*retrain it with `movierec train"):
        load_artifact(d)
    d = _copy(tiny_artifact, tmp_path / "v1-no-history")
    m = _as_version_1(d)
    del m["files"]["history.npz"]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="without history.npz cannot be migrated; retrain"):
        load_artifact(d)
    d = _copy(tiny_artifact, tmp_path / "v1-bad-history")
    _as_version_1(d)
    (d / "history.npz").write_bytes(b"not a history")
    with pytest.raises(ArtifactError, match="history.npz: checksum mismatch"):
        load_artifact(d)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("rating_scale"), "manifest lacks field 'rating_scale'"),
        (lambda m: m["rating_scale"].update(min=6.0), "min is above max"),
        (lambda m: m["rating_scale"].update(step=0.3), "max is not on the grid"),
        (lambda m: m.update(n_users="many"), "field 'n_users' must be int"),
        (lambda m: m["catalog"].update(n_trained=3), "catalog.n_trained is 3"),
    ],
)
def test_invalid_manifest_fields_are_named(tiny_artifact: Path, tmp_path: Path, change, message) -> None:
    d = _copy(tiny_artifact, tmp_path / "a")
    m = json.loads((d / "manifest.json").read_text())
    change(m)
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=message):
        read_manifest(d)
