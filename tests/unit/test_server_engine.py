"""engine.run_batch: jobs naming known users and jobs carrying rating vectors share one model step and each
gets exactly what the scorer answers for its own rows, profiles included (passed only when needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from movierec.core.features import MovieTable, Profiles
from movierec.core.scoring import Scorer
from movierec.core.sparse import Csr
from movierec.server.engine import ScoreJob, job_inputs, job_profiles, run_batch


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


# -- cold start: profiles through the batch ------------------------------------------------------------------


class Recording:
    """Delegates to a scorer and records the keyword arguments of every topk / predict call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def topk(self, inputs: Csr, k: int, **kw: Any) -> Any:
        self.calls.append(("topk", kw))
        return self._inner.topk(inputs, k, **kw)

    def predict(self, inputs: Csr, targets: Csr, **kw: Any) -> Any:
        self.calls.append(("predict", kw))
        return self._inner.predict(inputs, targets, **kw)


def profile_rows(*ages: int) -> Profiles:
    """Profiles with the given ages (0 = not given), gender F where an age is given."""
    a = np.array(ages, dtype=np.int64)
    return Profiles(
        a, np.where(a > 0, "F", "").astype(object), np.full(a.size, "", dtype=object),
        np.full(a.size, "", dtype=object), a > 0,
    )  # fmt: skip


def test_the_plain_path_passes_no_profiles(scorer: Scorer) -> None:
    rec = Recording(scorer)
    vec = Csr.from_coo([0], [1], [5.0], 1, scorer.n_items)
    run_batch(rec, [ScoreJob(None, 3, users=np.array([1])), ScoreJob(vec, 3, targets=vec)])  # type: ignore[arg-type]
    assert rec.calls == [("topk", {"exclude": None, "include": None, "include_rows": None}), ("predict", {})]


def test_profiles_are_stacked_in_row_order(scorer: Scorer) -> None:
    n = scorer.n_items
    vecs = Csr.empty(2, n)
    jobs = [
        ScoreJob(None, 3, users=np.array([4, 2])),
        ScoreJob(vecs, 3, profiles=profile_rows(30, 0)),
        ScoreJob(Csr.empty(1, n), 3),
    ]
    p = job_profiles(scorer, jobs)
    assert p is not None and p.age.tolist() == [0, 0, 30, 0, 0] and p.present.tolist() == [False, False, True, False, False]
    rec = Recording(scorer)
    run_batch(rec, jobs)  # type: ignore[arg-type]
    (_, kw), = rec.calls
    assert kw["profiles"].age.tolist() == [0, 0, 30, 0, 0]


def test_known_users_get_their_profiles_once_movies_were_added(tiny_cold_artifact: Path) -> None:
    cold = Scorer.load(tiny_cold_artifact, device="cpu")
    assert job_profiles(cold, [ScoreJob(None, 3, users=np.array([0]))]) is None  # nothing added: plain path
    added = cold.with_catalog(MovieTable(np.array([10_000]), ["Brand New"], np.array([2024]), [["Comedy"]]))
    users = np.array([5, 0, 7])
    p = job_profiles(added, [ScoreJob(None, 3, users=users)])
    want = cold.known_profiles.take(users)
    assert p is not None and not p.present.any()
    assert p.gender.tolist() == want.gender.tolist() and p.occupation.tolist() == want.occupation.tolist()
    # the batch answers what the scorer answers with those profiles; the added movie is a candidate
    (out,) = run_batch(added, [ScoreJob(None, added.n_items, users=users)])
    items, _ = added.topk(added.history.rows(users), added.n_items, profiles=want)
    np.testing.assert_array_equal(out.items, items)
    assert out.movie_ids is not None and ((out.movie_ids == 10_000).any(axis=1)).all()


def test_a_profile_row_is_scored_by_the_side_models(tiny_cold_artifact: Path) -> None:
    cold = Scorer.load(tiny_cold_artifact, device="cpu")
    n = cold.n_items
    rows = Csr.empty(2, n)
    targets = Csr.from_coo([0, 1], [3, 3], [1.0, 1.0], 2, n)
    prof = profile_rows(25, 0)
    (out,) = run_batch(cold, [ScoreJob(rows, 5, targets=targets, profiles=prof)])
    items, _ = cold.topk(rows, 5, profiles=prof)
    np.testing.assert_array_equal(out.items, items)
    assert out.items is not None and out.items[0].tolist() != out.items[1].tolist()  # profile vs popular
    np.testing.assert_allclose(np.asarray(out.predictions), cold.predict(rows, targets, profiles=prof), rtol=1e-6)
