"""Splits: mku.sh folds on a scaled-down u.data, holdout and time split properties, materialized splits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.trainer.data import (
    DataError,
    dataset_split_files,
    grouplens_folds,
    holdout_split,
    load_ratings,
    materialize_split,
    time_split,
    write_udata,
)


def _ratings(n_users: int = 30, n_items: int = 40, n: int = 100, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    return pd.DataFrame(
        {
            "user": (pairs // n_items + 1).astype(np.int64),
            "item": (pairs % n_items + 1).astype(np.int64),
            "rating": rng.integers(1, 6, n).astype(np.float32),
            "timestamp": rng.integers(880_000_000, 890_000_000, n).astype(np.int64),
        }
    )


def _rows(df: pd.DataFrame) -> list[tuple[int, int, float, int]]:
    return sorted(map(tuple, df[["user", "item", "rating", "timestamp"]].itertuples(index=False)))


def test_grouplens_folds_match_mku_sh(tmp_path: Path) -> None:
    """The folds equal what mku.sh's head/tail/sort pipeline produces (fold size 20 on 100 rows)."""
    udata = _ratings()
    path = tmp_path / "u.data"
    write_udata(udata, path)
    folds = grouplens_folds(udata, fold_size=20)
    assert len(folds) == 5
    for i, (base, test) in enumerate(folds, start=1):
        script = (
            f"head -{i * 20} u.data | tail -20 | sort -t\"$(printf '\\t')\" -k 1,1n -k 2,2n > t; "
            f"(head -{(i - 1) * 20} u.data; tail -{(5 - i) * 20} u.data) | sort -t\"$(printf '\\t')\" -k 1,1n -k 2,2n > b"
        )
        subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True)
        write_udata(test, tmp_path / "mine.test")
        write_udata(base, tmp_path / "mine.base")
        assert (tmp_path / "mine.test").read_text() == (tmp_path / "t").read_text()
        assert (tmp_path / "mine.base").read_text() == (tmp_path / "b").read_text()
        assert len(test) == 20 and len(base) == 80
        assert _rows(pd.concat([base, test])) == _rows(udata)


def test_grouplens_folds_refuse_wrong_size() -> None:
    with pytest.raises(DataError, match="exactly 5 x 20 = 100"):
        grouplens_folds(_ratings(n=99), fold_size=20)


def test_holdout_split_properties() -> None:
    df = _ratings(n_users=50, n_items=60, n=1500, seed=3)
    lonely = pd.DataFrame({"user": [999], "item": [1], "rating": np.float32([4.0]), "timestamp": [1]})
    df = pd.concat([df, lonely], ignore_index=True)
    train, valid = holdout_split(df, 0.25, seed=7)
    assert _rows(pd.concat([train, valid])) == _rows(df)  # union = input
    assert not set(zip(train.user, train.item, strict=True)) & set(zip(valid.user, valid.item, strict=True))  # disjoint
    counts = df.groupby("user").size()
    held = valid.groupby("user").size().reindex(counts.index, fill_value=0)
    expected = np.minimum(np.floor(0.25 * counts), counts - 1)
    assert (held == expected).all()  # per-user fraction
    assert held[999] == 0 and (train.user == 999).sum() == 1  # one rating stays in train
    assert set(train.user) == set(df.user)  # every user keeps a training rating
    again_train, again_valid = holdout_split(df, 0.25, seed=7)
    pd.testing.assert_frame_equal(again_valid, valid)
    assert not holdout_split(df, 0.25, seed=8)[1].equals(valid)
    assert str(train["rating"].dtype) == "float32"


def test_holdout_zero_fraction_and_bad_fraction() -> None:
    df = _ratings()
    train, valid = holdout_split(df, 0.0, seed=0)
    assert len(valid) == 0 and len(train) == len(df)
    with pytest.raises(ValueError):
        holdout_split(df, 1.0, seed=0)


def test_time_split_properties() -> None:
    df = _ratings(n=200)
    df.loc[:9, "timestamp"] = 885_000_000  # ties around the cut
    train, test = time_split(df, 0.2)
    assert len(test) == 40 and len(train) == 160
    assert train["timestamp"].max() <= test["timestamp"].min()
    assert _rows(pd.concat([train, test])) == _rows(df)
    assert time_split(df, 0.0)[1].empty


def test_materialize_and_locate_splits(tmp_path: Path) -> None:
    root = tmp_path / "ml-1m"
    root.mkdir()
    df = _ratings(n=300)
    lines = df.astype(str).agg("::".join, axis=1)
    (root / "ratings.dat").write_text("\n".join(lines) + "\n")
    (root / "movies.dat").write_text("1::A (1995)::Drama\n")
    with pytest.raises(DataError, match="movierec data split ml-1m"):
        dataset_split_files("ml-1m", tmp_path, "holdout")
    files = materialize_split("ml-1m", tmp_path, "holdout", seed=3)
    assert files == dataset_split_files("ml-1m", tmp_path, "holdout")
    assert files.catalog == root / "movies.dat"
    train, test = load_ratings(files.train), load_ratings(files.test)
    assert _rows(pd.concat([train, test])) == _rows(df)
    t_files = materialize_split("ml-1m", tmp_path, "time")
    assert load_ratings(t_files.train)["timestamp"].max() <= load_ratings(t_files.test)["timestamp"].min()
    with pytest.raises(DataError, match="has no split 'u1'"):
        dataset_split_files("ml-1m", tmp_path, "u1")
    with pytest.raises(DataError, match="unknown data set"):
        dataset_split_files("ml-2m", tmp_path, "u1")


def test_ml100k_split_paths(tmp_path: Path) -> None:
    root = tmp_path / "ml-100k"
    root.mkdir()
    for f in ("u1.base", "u1.test"):
        (root / f).write_text("1\t2\t3\t4\n")
    files = dataset_split_files("ml-100k", tmp_path, "u1")
    assert (files.train, files.test, files.catalog) == (root / "u1.base", root / "u1.test", root / "u.item")
    with pytest.raises(DataError, match="u2.base: split file not found"):
        dataset_split_files("ml-100k", tmp_path, "u2")
