"""Shared fixtures: small synthetic data and a small trained artifact (seconds to build, once per session)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def tiny_ratings() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, test, catalog): 120 users x 80 movies, ids starting at 1, a random 20% of ratings held out."""
    from movierec.trainer.synthetic import synthetic_catalog, synthetic_ratings

    df = synthetic_ratings(n_users=120, n_items=80, n_ratings=3000, seed=7)
    test = df.sample(frac=0.2, random_state=7)
    train = df.drop(test.index)
    return train.reset_index(drop=True), test.reset_index(drop=True), synthetic_catalog(80, seed=7)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_ratings: tuple[pd.DataFrame, ...]) -> Path:
    """A classic-preset artifact trained for a few epochs on `tiny_ratings` (read-only: copy before changing)."""
    from movierec.trainer.config import get_preset
    from movierec.trainer.pipeline import run_training

    train, test, catalog = tiny_ratings
    out = tmp_path_factory.mktemp("artifacts") / "tiny"
    run_training(
        train, test, catalog, get_preset("classic"), out,
        overrides={"train": {"epochs": 5, "batch_size": 16, "lr": 0.01, "device": "cpu"}},
        dataset="synthetic-tiny", progress=False,
    )
    return out
