"""The known MovieLens data sets: where they come from, which files make a complete copy, their splits.

One table, so `fetch`, the split helpers and the CLI agree on file names and formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from movierec.trainer.data.errors import DataError

# Splits that are computed from the ratings (`materialize_split`) rather than shipped with the data set.
COMPUTED_SPLITS: tuple[str, ...] = ("holdout", "time")
GROUPLENS_FOLDS: tuple[str, ...] = ("u1", "u2", "u3", "u4", "u5")


@dataclass(frozen=True)
class DatasetSpec:
    """How to obtain one data set and what a complete copy of it looks like.

    `url` is None when the data set does not come as a download of its own (ml-100k is taken from the
    recbole wheel on PyPI). `archive_sha256` / `archive_size` are checked when set. `users_file` /
    `users_format`: the user profiles (`load_users`), None for data sets without them (ml-latest, ml-25m).
    """

    name: str
    url: str | None
    ratings_file: str
    ratings_format: str
    catalog_file: str | None
    catalog_format: str | None
    files: tuple[str, ...]
    splits: tuple[str, ...] = COMPUTED_SPLITS
    archive_sha256: str | None = None
    archive_size: int | None = None
    users_file: str | None = None
    users_format: str | None = None

    @property
    def formats(self) -> tuple[str, str | None]:
        """(ratings format, catalog format) as understood by `load_ratings` / `load_catalog`."""
        return self.ratings_format, self.catalog_format


_GL = "https://files.grouplens.org/datasets/movielens"

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "ml-100k": DatasetSpec(
            name="ml-100k",
            url=None,
            ratings_file="u.data",
            ratings_format="grouplens",
            catalog_file="u.item",
            catalog_format="grouplens",
            files=("u.data", "u.item", "u.user", "u.genre", "u.occupation")
            + tuple(f"{f}.{kind}" for f in GROUPLENS_FOLDS for kind in ("base", "test")),
            splits=GROUPLENS_FOLDS + COMPUTED_SPLITS,
            users_file="u.user",
            users_format="grouplens",
        ),
        "ml-1m": DatasetSpec(
            name="ml-1m",
            url=f"{_GL}/ml-1m.zip",
            ratings_file="ratings.dat",
            ratings_format="dat",
            catalog_file="movies.dat",
            catalog_format="dat",
            files=("ratings.dat", "movies.dat", "users.dat"),
            users_file="users.dat",
            users_format="dat",
        ),
        "ml-latest-small": DatasetSpec(
            name="ml-latest-small",
            url=f"{_GL}/ml-latest-small.zip",
            ratings_file="ratings.csv",
            ratings_format="csv",
            catalog_file="movies.csv",
            catalog_format="csv",
            files=("ratings.csv", "movies.csv", "links.csv", "tags.csv"),
        ),
        "ml-25m": DatasetSpec(
            name="ml-25m",
            url=f"{_GL}/ml-25m.zip",
            ratings_file="ratings.csv",
            ratings_format="csv",
            catalog_file="movies.csv",
            catalog_format="csv",
            files=("ratings.csv", "movies.csv", "links.csv", "tags.csv"),
        ),
    }
)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_users_file(name: str, data_dir: Path) -> Path | None:
    """Where data set `name`'s user profiles are under `data_dir` (as laid out by `fetch_dataset`), or None
    when the data set has none. Whether the file exists is left to `load_users`, which names it if not."""
    spec = get_spec(name)
    return Path(data_dir) / name / spec.users_file if spec.users_file else None


@dataclass(frozen=True)
class SplitFiles:
    """The files of one train/test split, in formats `load_ratings` / `load_catalog` detect."""

    train: Path
    test: Path
    catalog: Path | None


def computed_split_dir(name: str, data_dir: Path, split: str) -> Path:
    return Path(data_dir) / name / "splits" / split


def dataset_split_files(name: str, data_dir: Path, split: str) -> SplitFiles:
    """Paths of `split` of data set `name` under `data_dir` (as laid out by `fetch_dataset`).

    ml-100k's u1..u5 are the GroupLens folds written at fetch time; `holdout` / `time` exist for every data
    set once `materialize_split` has written them. Missing files are an error here rather than later, so a
    training run fails before it loads anything.
    """
    spec = get_spec(name)
    if split not in spec.splits:
        raise DataError(f"data set {name} has no split {split!r}; choose one of: {', '.join(spec.splits)}")
    root = Path(data_dir) / name
    catalog = root / spec.catalog_file if spec.catalog_file else None
    if split in COMPUTED_SPLITS:
        sdir = computed_split_dir(name, data_dir, split)
        files = SplitFiles(sdir / "train.tsv", sdir / "test.tsv", catalog)
        hint = f"run `movierec data split {name} --data-dir {data_dir} --split {split}`"
    else:
        files = SplitFiles(root / f"{split}.base", root / f"{split}.test", catalog)
        hint = f"run `movierec data fetch {name} --dest {data_dir}`"
    for path in (files.train, files.test):
        if not path.is_file():
            raise DataError(f"{path}: split file not found; {hint}")
    return files
