"""The data layer: readers for the MovieLens formats (ratings, catalogs, user profiles), fetching, and
train/test splits.

numpy/pandas only (no torch), so the CLI and bulk tools can use it without the training extras.
"""

from __future__ import annotations

from movierec.trainer.data.errors import DataError, NetworkError
from movierec.trainer.data.fetch import fetch_dataset
from movierec.trainer.data.readers import (
    FORMATS,
    detect_format,
    load_catalog,
    load_pairs,
    load_ratings,
    load_users,
)
from movierec.trainer.data.registry import (
    DATASETS,
    DatasetSpec,
    SplitFiles,
    dataset_split_files,
    dataset_users_file,
)
from movierec.trainer.data.splits import (
    grouplens_folds,
    holdout_mask,
    holdout_split,
    materialize_split,
    time_split,
    write_udata,
)

__all__ = [
    "DATASETS",
    "FORMATS",
    "DataError",
    "DatasetSpec",
    "NetworkError",
    "SplitFiles",
    "dataset_split_files",
    "dataset_users_file",
    "detect_format",
    "fetch_dataset",
    "grouplens_folds",
    "holdout_mask",
    "holdout_split",
    "load_catalog",
    "load_pairs",
    "load_ratings",
    "load_users",
    "materialize_split",
    "time_split",
    "write_udata",
]
