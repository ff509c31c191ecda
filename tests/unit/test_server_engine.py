"""engine.run_batch: jobs naming known users and jobs carrying rating vectors share one model step and each
gets exactly what the scorer answers for its own rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.core.scoring import Scorer
from movierec.core.sparse import Csr
from movierec.server.engine import ScoreJob, job_inputs, run_batch


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Scorer:
    return Scorer.load(tiny_artifact, device="cpu")


def test_user_jobs_gather_histories_in_one_step(scorer: Scorer) -> None:
    jobs = [ScoreJob(None, 5, users=np.array([3])), ScoreJob(None, 3, users=np.array([7, 1]))]
    stacked = job_inputs(scorer, jobs)
    want = scorer.history.rows(np.array([3, 7, 1]))
    np.testing.assert_array_equal(stacked.indptr, want.indptr)
    np.testing.assert_array_equal(stacked.indices, want.indices)
    out = run_batch(scorer, jobs)
    items, scores = scorer.topk(want, 5)
    np.testing.assert_array_equal(out[0].items, items[:1, :5])
    np.testing.assert_array_equal(out[1].items, items[1:, :3])
    np.testing.assert_allclose(np.asarray(out[1].scores, float), np.asarray(scores[1:, :3], float), rtol=1e-6)
    for o in out:  # raw ids and lengths converted in the batch
        assert o.items is not None and o.movie_ids is not None and o.lengths is not None
        np.testing.assert_array_equal(o.movie_ids, scorer.items.raw[o.items])
        assert (o.lengths == o.items.shape[1]).all()


def test_mixed_user_and_vector_jobs(scorer: Scorer) -> None:
    n = scorer.n_items
    vec = Csr.from_coo([0, 0], [1, 2], [5.0, 4.0], 1, n)
    targets = Csr.from_coo([0], [4], [1.0], 1, n)
    jobs = [ScoreJob(None, 4, users=np.array([2])), ScoreJob(vec, 4, targets=targets), ScoreJob(vec, 0, targets=targets)]
    out = run_batch(scorer, jobs)
    np.testing.assert_array_equal(out[0].items, scorer.topk(scorer.history.rows(np.array([2])), 4)[0])
    np.testing.assert_array_equal(out[1].items, scorer.topk(vec, 4)[0])
    assert out[2].items is None and out[2].movie_ids is None
    for o in out[1:]:
        np.testing.assert_allclose(np.asarray(o.predictions, float), np.asarray(scorer.predict(vec, targets), float), rtol=1e-6)
    # a padded row (fewer candidates than k) reports its length and -1 ids
    tiny = ScoreJob(vec, n, include=np.array([0, 1, 5]))
    (o,) = run_batch(scorer, [tiny])
    assert o.lengths is not None and o.movie_ids is not None
    assert int(o.lengths[0]) == 2 and (o.movie_ids[0, 2:] == -1).all()


def test_a_job_has_inputs_or_users() -> None:
    with pytest.raises(ValueError):
        ScoreJob(None, 3)
    with pytest.raises(ValueError):
        ScoreJob(Csr.empty(1, 4), 3, users=np.array([0]))
