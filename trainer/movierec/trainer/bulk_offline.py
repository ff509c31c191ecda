"""Offline top-K for every known user: `movierec recommend --artifact DIR --all -k K --out FILE`.

Uses the same `Scorer.topk` as the server (the artifact's ranking model; already-rated movies excluded) on
each user's training history, in batches, and writes TSV `user<TAB>movie<TAB>rank<TAB>score` with the raw ids
of the input files (rank 1 = best), so outside harnesses can compute ranking metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.trainer.scoring import Scorer

HEADER = "user\tmovie\trank\tscore\n"


def write_all_recommendations(
    scorer: Scorer, k: int, out_path: str | Path, batch_size: int = 1024, *, header: bool = True
) -> int:
    """Write top-`k` for every user of the artifact to `out_path` (atomically); returns the number of rows.

    Users with fewer than k unrated movies get fewer rows. The file is written to a temporary name and
    renamed into place, so a crash never leaves a truncated file behind.
    """
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    n_users = len(scorer.users)
    rows = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            if header:
                f.write(HEADER)
            for start in range(0, n_users, batch_size):
                users = np.arange(start, min(start + batch_size, n_users))
                idx, scores = scorer.recommend_users(users, k)
                keep = idx >= 0
                ranks = np.broadcast_to(np.arange(1, idx.shape[1] + 1), idx.shape)[keep]
                user_raw = np.broadcast_to(scorer.users.to_raw(users)[:, None], idx.shape)[keep]
                movie_raw = scorer.items.to_raw(idx[keep])
                frame = pd.DataFrame({"user": user_raw, "movie": movie_raw, "rank": ranks, "score": scores[keep]})
                frame.to_csv(f, sep="\t", header=False, index=False, float_format="%.6g", lineterminator="\n")
                rows += len(frame)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows
