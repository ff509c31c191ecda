"""One bulk output schema: the SDK's copy equals the core's, and every writer produces it."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from movierec.client import BULK_SCHEMA as SDK_SCHEMA
from movierec.client import BulkChunk
from movierec.client._bulk import BulkWriter
from movierec.core.recommendations import SCHEMA, long_format
from movierec.core.scoring import Scorer
from movierec.trainer.offline import write_all_recommendations


def test_sdk_and_core_declare_the_same_columns() -> None:
    assert SDK_SCHEMA.equals(SCHEMA)


def test_long_format_drops_padding_and_ranks_from_one() -> None:
    movies = np.array([[7, 3, -1], [5, -1, -1]], dtype=np.int64)
    scores = np.array([[0.9, 0.5, -np.inf], [0.4, -np.inf, -np.inf]], dtype=np.float32)
    t = long_format(np.array([10, 20], dtype=np.int64), movies, scores)
    assert t.schema.equals(SCHEMA)
    assert t.column("user_id").to_pylist() == [10, 10, 20]
    assert t.column("rank").to_pylist() == [1, 2, 1]
    assert t.column("movie_id").to_pylist() == [7, 3, 5]


def test_recommend_all_parquet_has_the_schema(tiny_artifact, tmp_path) -> None:
    scorer = Scorer.load(tiny_artifact, device="cpu")
    out = tmp_path / "recs.parquet"
    n = write_all_recommendations(scorer, 4, out, batch_size=50, progress=False)
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA) and table.num_rows == n == 4 * len(scorer.users)
    idx, _ = scorer.recommend_users(np.arange(1), 4)
    assert table.column("movie_id").to_pylist()[:4] == scorer.items.to_raw(idx[0]).tolist()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv"])
def test_sdk_writer_and_recommend_all_write_the_same_file(tiny_artifact, tmp_path, suffix: str) -> None:
    """The SDK's bulk writer (fed the scorer's lists in the same batches, as chunks) and `recommend --all`
    agree byte for byte: same columns, types, delimiter and values, for Parquet, CSV and TSV."""
    scorer = Scorer.load(tiny_artifact, device="cpu")
    offline = tmp_path / f"offline{suffix}"
    write_all_recommendations(scorer, 4, offline, batch_size=7, progress=False)
    sdk = tmp_path / f"sdk{suffix}"
    writer = BulkWriter(sdk, {"k": 4})
    n = len(scorer.users)
    for start in range(0, n, 7):  # the offline writer's batches: a batch's float sums do not depend on others
        users = np.arange(start, min(start + 7, n))
        items, scores = scorer.recommend_users(users, 4)
        movies = np.where(items >= 0, scorer.items.to_raw(np.maximum(items, 0)), -1)
        writer.write(BulkChunk(scorer.users.to_raw(users), movies, scores, b"", int(users[-1]) + 1, n, "v"))
    writer.finish()
    if suffix == ".parquet":
        assert pq.read_table(sdk).schema.remove_metadata().equals(SCHEMA)
        assert pq.read_table(sdk).replace_schema_metadata(None).equals(pq.read_table(offline))
    else:
        assert sdk.read_bytes() == offline.read_bytes()
        header = offline.read_text().splitlines()[0]
        assert header.replace('"', "").split("\t" if suffix == ".tsv" else ",") == SCHEMA.names
