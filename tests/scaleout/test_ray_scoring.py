"""Bulk scoring on a local Ray with 2 workers: same answer as the in-process scorer, idempotent re-runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from movierec.trainer.scoring import Scorer

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (2 CPUs), so each scoring run does not pay Ray's start-up.

    Ray gives its raylet 30 s to register by default; a loaded 2-core CI machine can need more.
    """
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_ray_scores_every_user_like_the_scorer_and_skips_finished_blocks(tiny_artifact: Path, tmp_path: Path) -> None:
    from movierec.trainer.ray_scoring import PART_PATTERN, score_all_ray

    out = tmp_path / "recs"
    first = score_all_ray(tiny_artifact, out, k=7, workers=2, block_users=25, device="cpu")
    scorer = Scorer.load(tiny_artifact, device="cpu")
    n_users = len(scorer.users)
    assert first.users == n_users and first.blocks_scored == first.blocks_total == -(-n_users // 25)

    table = pq.read_table(out).to_pandas().sort_values("user")
    assert table["user"].tolist() == scorer.users.raw.tolist()  # every user exactly once
    items, scores = scorer.recommend_users(np.arange(n_users), 7)
    np.testing.assert_array_equal(np.stack(table["movies"].to_numpy()), scorer.items.to_raw(items))
    np.testing.assert_allclose(np.stack(table["scores"].to_numpy()), scores, rtol=1e-5, atol=1e-5)

    # an interrupted job: drop one block's file; the re-run scores only that block
    (out / PART_PATTERN.format(block=1)).unlink()
    again = score_all_ray(tiny_artifact, out, k=7, workers=2, block_users=25, device="cpu")
    assert again.blocks_scored == 1 and again.blocks_skipped == first.blocks_total - 1
    assert sorted(pq.read_table(out).column("user").to_pylist()) == scorer.users.raw.tolist()

    with pytest.raises(ValueError, match="another job"):
        score_all_ray(tiny_artifact, out, k=3, workers=1, block_users=25, device="cpu")
