"""The one output schema of bulk recommendations: `user_id, rank, movie_id, score`, one row per recommendation.

Every writer uses it: the gRPC bulk path through the SDK, Ray Data scoring and `movierec recommend --all`.
The SDK may not import the core (it ships without torch and without this package's internals), so it
declares the same columns itself; tests/unit/test_bulk_schema.py keeps the two equal.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("rank", pa.int32()), ("movie_id", pa.int64()), ("score", pa.float32())]
)


def long_format(
    user_ids: npt.NDArray[np.int64], movie_ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float32]
) -> pa.Table:
    """Top-k blocks (users x k movie ids and scores, best first; movie id -1 = padding) as a long table."""
    n, k = movie_ids.shape
    valid = movie_ids >= 0
    cols = {
        "user_id": np.broadcast_to(np.asarray(user_ids, dtype=np.int64)[:, None], (n, k))[valid],
        "rank": np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), (n, k))[valid],
        "movie_id": np.asarray(movie_ids, dtype=np.int64)[valid],
        "score": np.asarray(scores, dtype=np.float32)[valid],
    }
    return pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in SCHEMA], schema=SCHEMA)
