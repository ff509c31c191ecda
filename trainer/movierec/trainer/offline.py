"""Offline top-K for every known user, through the same `Scorer` the server uses.

Writes TSV `user<TAB>movie<TAB>rank<TAB>score` (raw ids of the input files, rank from 1) batch by batch, so
memory stays O(batch x n_items) however many users there are; the file appears atomically when complete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from movierec.core.scoring import Scorer


def write_all_recommendations(
    scorer: Scorer, k: int, out_path: str | Path, *, batch_size: int = 1024, progress: bool = True
) -> int:
    """Write top-k for every known user to `out_path`; returns the number of rows written."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_users = len(scorer.users)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    rows_written = 0
    try:
        with os.fdopen(fd, "w") as f, tqdm(
            total=n_users, unit="user", desc="recommend", disable=not progress, file=sys.stderr
        ) as bar:
            f.write("user\tmovie\trank\tscore\n")
            for start in range(0, n_users, batch_size):
                users = np.arange(start, min(start + batch_size, n_users))
                items, scores = scorer.recommend_users(users, k)
                valid = items >= 0
                kk = items.shape[1]
                user_col = np.repeat(scorer.users.to_raw(users), kk).reshape(-1, kk)[valid]
                movie_col = scorer.items.to_raw(np.where(valid, items, 0))[valid]
                rank_col = np.broadcast_to(np.arange(1, kk + 1), items.shape)[valid]
                lines = np.char.add(
                    np.char.add(np.char.add(user_col.astype(str), "\t"), np.char.add(movie_col.astype(str), "\t")),
                    np.char.add(np.char.add(rank_col.astype(str), "\t"), np.char.mod("%.6f", scores[valid])),
                )
                if lines.size:
                    f.write("\n".join(lines.tolist()))
                    f.write("\n")
                rows_written += int(lines.size)
                bar.update(users.size)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return rows_written
