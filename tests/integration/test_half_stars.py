"""Half-star ratings end to end: ml-latest CSV (0.5 .. 5 step 0.5) -> `movierec train` -> artifact scale ->
served model accepts 0.5, refuses off-scale ratings naming the scale, predicts within [0.5, 5]; `predict
--pairs` and `evaluate --test` read the same CSV layout as `train`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from movierec.cli import main
from movierec.client import Client, MovieRecError
from movierec.client import RatingScale as ClientRatingScale
from movierec.core.artifact import RatingScale, read_manifest

HALF_STARS = RatingScale(0.5, 5.0, 0.5)


@pytest.fixture(scope="module")
def half_star_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ml-latest layout files (ratings CSV with header, movies.csv), 0.5-step ratings, generated once."""
    from movierec.trainer.synthetic import synthetic_catalog, synthetic_ratings

    d = tmp_path_factory.mktemp("ml-latest-tiny")
    df = synthetic_ratings(n_users=120, n_items=80, n_ratings=3000, seed=11, step=0.5, low=0.5)
    test = df.sample(frac=0.2, random_state=11)
    train = df.drop(test.index)
    assert (train["rating"] == 0.5).any() and (train["rating"] % 1 == 0.5).any()  # real half stars
    for name, part in (("ratings.csv", train), ("test.csv", test)):
        part.rename(columns={"user": "userId", "item": "movieId"}).to_csv(d / name, index=False)
    cat = synthetic_catalog(80, seed=11)
    titles = [f"{t} ({y})" for t, y in zip(cat["title"], cat["year"], strict=True)]
    pd.DataFrame({"movieId": cat["item"], "title": titles, "genres": cat["genres"]}).to_csv(
        d / "movies.csv", index=False
    )
    pairs = test[["user", "item"]].rename(columns={"user": "userId", "item": "movieId"})
    pairs.to_csv(d / "pairs.csv", index=False)  # pairs without rating/timestamp columns
    return {"train": d / "ratings.csv", "test": d / "test.csv", "catalog": d / "movies.csv", "pairs": d / "pairs.csv",
            "dir": d}  # fmt: skip


@pytest.fixture(scope="module")
def half_star_artifact(half_star_files: dict[str, Path]) -> Path:
    out = half_star_files["dir"] / "artifact"
    f = half_star_files
    rc = main(["train", "--train", str(f["train"]), "--test", str(f["test"]), "--catalog", str(f["catalog"]),
               "--out", str(out), "--preset", "classic", "--epochs", "3", "--batch-size", "16", "--lr", "0.01",
               "--device", "cpu", "--quiet", "--json"])  # fmt: skip
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def half_star_scorer(half_star_artifact: Path) -> Any:
    from movierec.core.scoring import Scorer

    return Scorer.load(half_star_artifact, device="cpu")


@pytest.fixture()
def half_star_client(make_server: Any, half_star_scorer: Any) -> Iterator[Client]:
    srv = make_server(half_star_scorer)
    with Client(srv.target, timeout=10) as c:
        yield c


def test_trained_artifact_records_the_half_star_scale(half_star_artifact: Path) -> None:
    manifest = read_manifest(half_star_artifact)
    assert manifest.rating_scale == HALF_STARS
    raw = json.loads((half_star_artifact / "manifest.json").read_text())
    assert raw["rating_scale"] == {"min": 0.5, "max": 5.0, "step": 0.5}


def test_half_star_ratings_accepted_and_predictions_on_the_scale(
    half_star_client: Client, half_star_scorer: Any
) -> None:
    c = half_star_client
    movies = half_star_scorer.items.raw
    info = c.model_info()
    assert info.rating_scale == ClientRatingScale(0.5, 5.0, 0.5)
    assert str(info.rating_scale) == "0.5..5 step 0.5"
    low = {int(movies[0]): 0.5, int(movies[1]): 0.5, int(movies[2]): 1.0}
    pred = c.predict(low, movies)
    assert pred.ratings.shape == (len(movies),)
    assert (pred.ratings >= 0.5).all() and (pred.ratings <= 5.0).all()
    recs = c.recommend_for_ratings({int(movies[3]): 0.5, int(movies[4]): 4.5}, k=5)
    assert len(recs[0].movie_ids) == 5


@pytest.mark.parametrize("bad", [0.25, 5.5, 3.3])
def test_off_scale_ratings_refused_naming_the_scale(half_star_client: Client, half_star_scorer: Any, bad: float) -> None:
    movies = half_star_scorer.items.raw[:3]
    with pytest.raises(MovieRecError) as exc:
        half_star_client.predict({int(movies[0]): 4.0, int(movies[1]): 3.5, int(movies[2]): bad}, movies)
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"ratings[2]: {bad:g} is not on the model's rating scale 0.5..5 step 0.5" in exc.value.details


def test_predict_pairs_and_evaluate_read_the_training_csv_layout(
    half_star_files: dict[str, Path], half_star_artifact: Path, tmp_path: Path, capsys: Any
) -> None:
    f = half_star_files
    for pairs in (f["pairs"], f["test"]):  # without and with rating/timestamp columns
        out = tmp_path / f"pred-{pairs.stem}.tsv"
        assert main(["predict", "--artifact", str(half_star_artifact), "--pairs", str(pairs), "--out", str(out),
                     "--device", "cpu"]) == 0  # fmt: skip
        got = pd.read_csv(out, sep="\t", header=None, names=["user", "item", "prediction"])
        want = pd.read_csv(pairs)
        np.testing.assert_array_equal(got["user"], want["userId"])
        np.testing.assert_array_equal(got["item"], want["movieId"])
        assert got["prediction"].between(0.5, 5.0).all()
    capsys.readouterr()
    assert main(["evaluate", "--artifact", str(half_star_artifact), "--test", str(f["test"]), "--device", "cpu",
                 "--json"]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["ratings"] == len(pd.read_csv(f["test"])) and np.isfinite(metrics["rmse"])
