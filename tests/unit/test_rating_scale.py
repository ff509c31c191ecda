"""RatingScale: inference from training ratings, membership (what the server accepts) and clipping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from movierec.core.artifact import RatingScale


@pytest.mark.parametrize(
    ("ratings", "scale"),
    [
        ([1, 2, 3, 4, 5], RatingScale(1.0, 5.0, 1.0)),  # ml-100k / ml-1m stars
        ([0.5, 1.0, 3.5, 5.0], RatingScale(0.5, 5.0, 0.5)),  # ml-latest / ml-25m half stars
        ([1.0, 1.5, 5.0], RatingScale(1.0, 5.0, 0.5)),  # half stars above a 1-star minimum
        ([0.5, 1.5, 4.5], RatingScale(0.5, 4.5, 1.0)),  # whole steps from 0.5
        ([1.0, 1.25, 2.0], RatingScale(1.0, 2.0, 0.25)),
        ([1.0, 1.1, 4.1], RatingScale(1.0, 4.1, 0.1)),  # float32 4.1 is 4.0999999..., still step 0.1
        ([1.0, 1.234, 5.0], RatingScale(1.0, 5.0, 0.0)),  # on no candidate grid: continuous
        ([3.0, 3.0], RatingScale(3.0, 3.0, 1.0)),
    ],
)
def test_infer(ratings: list[float], scale: RatingScale) -> None:
    assert RatingScale.infer(np.asarray(ratings, dtype=np.float32)) == scale


def test_infer_refuses_no_or_non_finite_ratings() -> None:
    with pytest.raises(ValueError, match="no ratings"):
        RatingScale.infer(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="not finite"):
        RatingScale.infer(np.array([1.0, np.nan], np.float32))


def test_infer_on_ml_latest_scale_is_exact_for_many_float32_ratings() -> None:
    values = np.random.default_rng(0).integers(1, 11, 100_000).astype(np.float32) / 2
    assert RatingScale.infer(values) == RatingScale(0.5, 5.0, 0.5)


def test_contains_and_clip() -> None:
    half = RatingScale(0.5, 5.0, 0.5)
    values = np.array([0.5, 1.0, 3.5, 5.0, 0.25, 5.5, 3.3, 0.0, np.nan, np.inf], np.float32)
    assert half.contains(values).tolist() == [True] * 4 + [False] * 6
    assert RatingScale(1.0, 5.0, 1.0).contains(np.array([1, 3, 3.5, 0.5], np.float32)).tolist() == [
        True, True, False, False,
    ]  # fmt: skip
    assert RatingScale(1.0, 5.0, 0.0).contains(np.array([1.0, 3.3, 5.01, np.nan], np.float32)).tolist() == [
        True, True, False, False,
    ]  # fmt: skip
    np.testing.assert_array_equal(half.clip(np.array([-1.0, 0.7, 9.0])), np.array([0.5, 0.7, 5.0], np.float32))
    assert half.clip(np.array([0.1])).dtype == np.float32
    assert str(half) == "0.5..5 step 0.5" and str(RatingScale(1, 5, 0)) == "1..5 (any value)"
    assert half.midpoint == 2.75


def test_invalid_scales_refused() -> None:
    for args, message in (((5.0, 1.0, 1.0), "above max"), ((1.0, 5.0, -1.0), "negative"),
                          ((1.0, 5.0, 3.0), "not on the grid"), ((1.0, float("inf"), 1.0), "finite")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            RatingScale(*args)


def test_scorer_clips_into_the_artifact_scale(tiny_artifact: Path) -> None:
    """The scorer's clipping bounds are the artifact's, not constants: a narrow scale pins every prediction."""
    from movierec.core.artifact import load_artifact
    from movierec.core.scoring import Scorer

    a = load_artifact(tiny_artifact)
    rows = a.history.rows(np.arange(5))
    wide = Scorer(dataclasses.replace(a, rating_scale=RatingScale(-100.0, 100.0, 0.0)), torch.device("cpu"))
    narrow = Scorer(dataclasses.replace(a, rating_scale=RatingScale(3.0, 3.5, 0.5)), torch.device("cpu"))
    raw, pinned = wide.predict(rows, rows), narrow.predict(rows, rows)
    np.testing.assert_allclose(pinned, np.clip(raw, 3.0, 3.5), rtol=1e-6)
    assert pinned.min() >= 3.0 and pinned.max() <= 3.5 and (raw < 3.0).any() | (raw > 3.5).any()
