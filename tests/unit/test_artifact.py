from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from movierec.core.artifact import ArtifactError, load_artifact, save_artifact


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
