"""Offline top-K for every known user, through the same `Scorer` the server uses.

Writes the shared long format `user_id, rank, movie_id, score` (`movierec.core.recommendations`; raw ids of
the input files, rank from 1): Parquet for a `.parquet` path, CSV for `.csv`, else tab-separated text (both
with a header, as the SDK's bulk writer writes them). Batch by
batch, so memory stays O(batch x n_items) however many users there are; the file appears atomically when
complete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pyarrow import csv
from tqdm import tqdm

from movierec.core.recommendations import SCHEMA, long_format
from movierec.core.scoring import Scorer


def write_all_recommendations(
    scorer: Scorer, k: int, out_path: str | Path, *, batch_size: int = 1024, progress: bool = True
) -> int:
    """Write top-k for every known user to `out_path`; returns the number of rows written."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_users = len(scorer.users)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    suffix = out.suffix.lower()
    rows_written = 0
    try:
        writer: pq.ParquetWriter | csv.CSVWriter
        if suffix == ".parquet":
            writer = pq.ParquetWriter(tmp_name, SCHEMA)
        else:
            options = csv.WriteOptions(delimiter="," if suffix == ".csv" else "\t", quoting_style="none")
            writer = csv.CSVWriter(tmp_name, SCHEMA, write_options=options)
        with writer, tqdm(
            total=n_users, unit="user", desc="recommend", disable=not progress, file=sys.stderr
        ) as bar:
            for start in range(0, n_users, batch_size):
                users = np.arange(start, min(start + batch_size, n_users))
                items, scores = scorer.recommend_users(users, k)
                movies = np.where(items >= 0, scorer.items.to_raw(np.where(items >= 0, items, 0)), -1)
                table = long_format(scorer.users.to_raw(users), movies, scores)
                writer.write_table(table)
                rows_written += table.num_rows
                bar.update(users.size)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return rows_written
