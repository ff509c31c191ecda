"""Train/test splits: the GroupLens 5 folds (mku.sh), a per-user random holdout and a time split.

All vectorized over rows (sorting and group ranks), no loop per user: ml-25m has 162k users.
The outputs keep the input's row order within each part, so a split is reproducible from (input, seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from movierec.trainer.data.errors import DataError
from movierec.trainer.data.readers import load_ratings
from movierec.trainer.data.registry import COMPUTED_SPLITS, SplitFiles, computed_split_dir, get_spec

GROUPLENS_FOLD_SIZE = 20_000
GROUPLENS_N_FOLDS = 5


def sort_user_item(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted as `sort -t<TAB> -k 1,1n -k 2,2n` does (user, then item, numerically)."""
    order = np.lexsort((df["item"].to_numpy(), df["user"].to_numpy()))
    return df.iloc[order].reset_index(drop=True)


def grouplens_folds(
    udata: pd.DataFrame, fold_size: int = GROUPLENS_FOLD_SIZE, n_folds: int = GROUPLENS_N_FOLDS
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """The (u{i}.base, u{i}.test) pairs exactly as GroupLens' mku.sh builds them from u.data.

    mku.sh takes test fold i as lines (i-1)*20000+1 .. i*20000 of u.data *in file order* and the base as
    the other lines, each sorted by user then item; so `udata` must be in u.data order. The fold size is a
    parameter only so that small inputs can be tested; mku.sh's head/tail arithmetic is only "the rest" when
    the input has exactly n_folds * fold_size rows, so anything else is refused.
    """
    if fold_size <= 0 or n_folds <= 0:
        raise ValueError("fold_size and n_folds must be positive")
    if len(udata) != fold_size * n_folds:
        raise DataError(
            f"GroupLens folds need exactly {n_folds} x {fold_size} = {n_folds * fold_size} ratings, got {len(udata)}"
        )
    folds = []
    positions = np.arange(len(udata))
    for i in range(n_folds):
        in_test = (positions >= i * fold_size) & (positions < (i + 1) * fold_size)
        folds.append((sort_user_item(udata[~in_test]), sort_user_item(udata[in_test])))
    return folds


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")


def holdout_mask(users: npt.NDArray[np.int64], fraction: float, seed: int) -> npt.NDArray[np.bool_]:
    """The project's one per-user random holdout: True for floor(fraction * n) of each user's n ratings.

    A user never loses all of its ratings (a user with no training ratings cannot be encoded), so one with a
    single rating keeps it. The same rule carves the validation split every model is selected on and the
    computed `holdout` test split. Vectorized: one random key per row, a lexsort by (user, key) and the rank
    of each row within its user.
    """
    _check_fraction(fraction)
    n = users.shape[0]
    if fraction == 0 or n == 0:
        return np.zeros(n, dtype=bool)
    keys = np.asarray(np.random.default_rng(seed).random(n))
    order = np.lexsort((keys, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)
    take = np.minimum(np.floor(fraction * counts), counts - 1)
    held = np.zeros(n, dtype=bool)
    held[order] = rank < np.repeat(take, counts)
    return held


def holdout_split(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`holdout_mask` applied to a ratings frame: (kept, held out), each with a fresh index."""
    held = holdout_mask(df["user"].to_numpy(np.int64), fraction, seed)
    return df[~held].reset_index(drop=True), df[held].reset_index(drop=True)


def time_split(df: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest round(fraction * n) ratings by timestamp go to test (a global cut, as in deployment).

    Ties at the cut are broken by file order (a stable sort), so every train timestamp <= every test one.
    """
    _check_fraction(fraction)
    n = len(df)
    n_test = int(np.floor(fraction * n + 0.5))
    order = np.argsort(df["timestamp"].to_numpy(), kind="stable")
    is_test = np.zeros(n, dtype=bool)
    is_test[order[n - n_test :]] = True
    return df[~is_test].reset_index(drop=True), df[is_test].reset_index(drop=True)


def write_udata(df: pd.DataFrame, path: Path) -> None:
    """Write ratings in u.data layout (user TAB item TAB rating TAB timestamp), whole ratings as "4"."""
    df[["user", "item", "rating", "timestamp"]].to_csv(
        path, sep="\t", header=False, index=False, float_format="%g", lineterminator="\n"
    )


def materialize_split(
    name: str, data_dir: Path, split: str, seed: int = 0, fraction: float = 0.2
) -> SplitFiles:
    """Write `holdout` (per-user random) or `time` split of a fetched data set as train.tsv / test.tsv.

    Written to a temp name and renamed, so `dataset_split_files` never sees half a split; `split.json`
    records seed and fraction so a result can be traced back to them.
    """
    spec = get_spec(name)
    if split not in COMPUTED_SPLITS:
        raise DataError(f"split {split!r} cannot be materialized; choose one of: {', '.join(COMPUTED_SPLITS)}")
    root = Path(data_dir) / name
    ratings = load_ratings(root / spec.ratings_file, spec.ratings_format)
    if split == "holdout":
        train, test = holdout_split(ratings, fraction, seed)
    else:
        train, test = time_split(ratings, fraction)
    out = computed_split_dir(name, data_dir, split)
    out.mkdir(parents=True, exist_ok=True)
    for frame, fname in ((train, "train.tsv"), (test, "test.tsv")):
        tmp = out / f".{fname}.tmp"
        write_udata(frame, tmp)
        tmp.replace(out / fname)
    meta = {"dataset": name, "split": split, "seed": seed, "fraction": fraction, "train": len(train), "test": len(test)}
    (out / "split.json").write_text(json.dumps(meta, indent=2) + "\n")
    catalog = root / spec.catalog_file if spec.catalog_file else None
    return SplitFiles(out / "train.tsv", out / "test.tsv", catalog)
