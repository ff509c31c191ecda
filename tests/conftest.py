"""Shared fixtures: small synthetic data and a small trained artifact (seconds to build, once per session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def tiny_profiles() -> pd.DataFrame:
    """Profiles of `tiny_ratings`' 120 users: age, gender, occupation, zip (leading zeros kept)."""
    import numpy as np

    rng = np.random.default_rng(11)
    n = 120
    return pd.DataFrame(
        {
            "user": np.arange(1, n + 1),
            "age": rng.integers(12, 70, n),
            "gender": rng.choice(["F", "M"], n),
            "occupation": rng.choice(["student", "engineer", "artist", "writer", "retired"], n),
            "zip": [f"{z:05d}" for z in rng.integers(0, 99999, n)],
        }
    )


@pytest.fixture(scope="session")
def tiny_cold_preset() -> Any:
    """`tiny_cold_preset(main_epochs, side_epochs)`: classic + EASE-liked + the hybrid cold-start models,
    with few epochs (tests)."""
    import dataclasses

    from movierec.trainer.config import CLASSIC, COLD_START, EASE_LIKED, Preset

    def make(main_epochs: int = 5, side_epochs: int = 15) -> Preset:
        return Preset(
            name="tiny-cold",
            description="classic + EASE-liked + hybrid cold-start models, few epochs (tests)",
            model=CLASSIC.model,
            train=dataclasses.replace(CLASSIC.train, epochs=main_epochs, batch_size=16, lr=0.01, device="cpu"),
            ranking_model=EASE_LIKED.model,
            ranking_train=EASE_LIKED.train,
            side_models=tuple(
                (role, model, dataclasses.replace(cfg, epochs=side_epochs, device="cpu"))
                for role, model, cfg in COLD_START
            ),
        )

    return make


@pytest.fixture(scope="session")
def tiny_cold_artifact(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_ratings: tuple[pd.DataFrame, ...],
    tiny_profiles: pd.DataFrame,
    tiny_cold_preset: Any,
) -> Path:
    """An artifact of `tiny_ratings` with cold-start models: a classic rating model, EASE-liked for ranking,
    and the hybrid "cold-rating" / "cold-ranking" models reading `tiny_profiles` and the catalog's genres,
    years and title words (read-only: copy before changing)."""
    from movierec.trainer.pipeline import run_training

    train, test, catalog = tiny_ratings
    out = tmp_path_factory.mktemp("artifacts") / "tiny-cold"
    run_training(train, test, catalog, tiny_cold_preset(), out, dataset="synthetic-tiny", progress=False,
                 profiles=tiny_profiles)  # fmt: skip
    return out
