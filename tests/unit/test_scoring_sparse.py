"""The sparse serving path (EASE scores CSR rows without a dense batch) answers exactly as the dense path.

MOVIEREC_TEST_DEVICE=cuda (make gpu-check) runs them on the GPU; default cpu.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from movierec.core import scoring
from movierec.core.scoring import Scorer
from movierec.core.sparse import Csr


@pytest.fixture(scope="module")
def ease_scorer(tmp_path_factory: pytest.TempPathFactory, tiny_ratings: tuple[pd.DataFrame, ...]) -> Scorer:
    from movierec.trainer.config import get_preset
    from movierec.trainer.pipeline import run_training

    train, test, catalog = tiny_ratings
    out = tmp_path_factory.mktemp("artifacts") / "ease"
    run_training(train, test, catalog, get_preset("ease"), out, overrides={"train": {"device": "cpu"}},
                 dataset="synthetic-tiny", progress=False)  # fmt: skip
    return Scorer.load(out, device=os.environ.get("MOVIEREC_TEST_DEVICE", "cpu"))


def _both_paths(
    s: Scorer, monkeypatch: pytest.MonkeyPatch, inputs: Csr, k: int, **kw: object
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    monkeypatch.setattr(scoring, "SPARSE_INPUT_DENSITY", 2.0)  # every batch takes the sparse path
    assert scoring._sparse_ranking(s.ranking_model, inputs)
    sparse = s.topk(inputs, k, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(scoring, "SPARSE_INPUT_DENSITY", 0.0)  # every batch takes the dense path
    assert not scoring._sparse_ranking(s.ranking_model, inputs)
    dense = s.topk(inputs, k, **kw)  # type: ignore[arg-type]
    return sparse, dense


def test_sparse_path_equals_dense_path(ease_scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    s = ease_scorer
    users = np.arange(len(s.users))
    inputs = s.history.rows(users)
    (si, sv), (di, dv) = _both_paths(s, monkeypatch, inputs, 12)
    np.testing.assert_allclose(sv, dv, rtol=1e-5, atol=1e-5)
    # the same items, up to the order of exact ties
    assert (np.sort(si, axis=1) == np.sort(di, axis=1)).mean() > 0.99
    hist = inputs
    rows = np.repeat(np.arange(hist.n_rows), hist.row_lengths())
    assert not (si[rows] == hist.indices[:, None]).any(), "a rated movie was recommended"


def test_sparse_path_include_exclude_and_explicit_zeros(ease_scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    s = ease_scorer
    n = s.n_items
    # row 1 holds an explicit 0.0 entry: "unrated", so movie 2 stays a candidate on both paths
    inputs = Csr.from_coo([0, 1, 1], [0, 0, 2], [5.0, 4.0, 0.0], 2, n)
    include = Csr.from_coo([0, 0, 0], [0, 3, 7], [1, 1, 1], 2, n)
    exclude = Csr.from_coo([1], [5], [1], 2, n)
    kw = {"exclude": exclude, "include": include, "include_rows": np.array([True, False])}
    (si, sv), (di, dv) = _both_paths(s, monkeypatch, inputs, 6, **kw)
    np.testing.assert_array_equal(si, di)
    np.testing.assert_allclose(sv, dv, rtol=1e-5, atol=1e-6)
    assert set(si[0][:2].tolist()) == {3, 7} and list(si[0][2:]) == [-1] * 4
    assert 5 not in si[1] and 0 not in si[1]


def test_nan_scores_are_never_recommended(ease_scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    s = ease_scorer
    model = s.ranking_model
    saved = model.weights.clone()
    try:
        with torch.no_grad():
            model.weights[:, 4] = float("nan")  # movie 4 scores NaN for everyone
        inputs = s.history.rows(np.arange(len(s.users)))
        (si, _), (di, _) = _both_paths(s, monkeypatch, inputs, 5)
        assert not (si == 4).any() and not (di == 4).any()
    finally:
        with torch.no_grad():
            model.weights.copy_(saved)


def test_autoencoder_sparse_path_equals_dense_path(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Scorer.load(tiny_artifact, device=os.environ.get("MOVIEREC_TEST_DEVICE", "cpu"))
    inputs = s.history.rows(np.arange(len(s.users)))
    (si, sv), (di, dv) = _both_paths(s, monkeypatch, inputs, 10)
    np.testing.assert_allclose(sv, dv, rtol=1e-5, atol=1e-5)
    assert (np.sort(si, axis=1) == np.sort(di, axis=1)).mean() > 0.99


def test_cached_transpose_follows_in_place_weight_updates(tiny_artifact: Path) -> None:
    from movierec.core.device import csr_tensor

    s = Scorer.load(tiny_artifact, device="cpu")
    model = s.ranking_model
    x = csr_tensor(s.history.rows(np.arange(5)), s.device)
    with torch.inference_mode():
        before = model.scores_sparse(x).clone()
        with torch.no_grad():
            model.encoder[0].weight.mul_(2.0)  # an in-place update bumps the tensor's version
        after = model.scores_sparse(x)
        dense = model.scores(x.to_dense())
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, dense, rtol=1e-5, atol=1e-5)
