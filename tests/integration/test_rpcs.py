"""Every RPC through the SDK against a real server and the trainer's scorer, compared with in-process scoring."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
import pytest

from movierec.client import AsyncClient, Client, MovieRecError, RatingsQuery, RecommendQuery
from movierec.core.sparse import Csr


def known_users(scorer: Any, n: int) -> np.ndarray:
    return scorer.users.raw[:n]


def in_process_topk(scorer: Any, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    idx = scorer.users.to_index(user_ids)
    items, scores = scorer.topk(scorer.history.rows(idx), k)
    return items, scores


def test_model_info(client: Client, scorer: Any, server: Any) -> None:
    info = client.model_info()
    assert info.version == scorer.info.version
    assert info.dataset == scorer.info.dataset
    assert (info.n_users, info.n_items, info.n_ratings) == (
        scorer.info.n_users,
        scorer.info.n_items,
        scorer.info.n_ratings,
    )
    assert set(info.metrics) == set(scorer.info.metrics)
    assert info.training_seconds == pytest.approx(scorer.info.training_seconds)
    assert info.device == "cpu"
    assert info.limits.max_k == scorer.info.n_items
    assert info.limits.max_users_per_call == server.settings.max_users_per_call


def test_health_and_movies(client: Client, scorer: Any) -> None:
    assert client.health() == "SERVING"
    assert client.health("movierec.v1.RecommenderService") == "SERVING"
    everything = client.movies()
    assert len(everything) == len(scorer.items)
    np.testing.assert_array_equal(everything.movie_ids, scorer.items.raw)
    some = client.movies(scorer.items.raw[[3, 1]])
    assert some.titles == [scorer.catalog.titles[3], scorer.catalog.titles[1]]
    assert some.to_pandas().shape == (2, 4)


def test_recommend_matches_in_process_scoring(client: Client, scorer: Any) -> None:
    users = known_users(scorer, 7)
    recs = client.recommend(users, k=10)
    items, scores = in_process_topk(scorer, users, 10)
    assert recs.model_version == scorer.info.version
    assert [r.user_id for r in recs] == users.tolist()
    for r, it, sc in zip(recs, items, scores, strict=True):
        valid = it >= 0
        np.testing.assert_array_equal(r.movie_ids, scorer.items.raw[it[valid]])
        np.testing.assert_allclose(r.scores, sc[valid], rtol=1e-5, atol=1e-6)
        rated = scorer.items.raw[scorer.history.rows([scorer.users.to_index([r.user_id])[0]]).indices]
        assert not set(r.movie_ids.tolist()) & set(rated.tolist())
    df = recs.to_pandas()
    assert list(df.columns) == ["query", "user_id", "rank", "movie_id", "score"]


def test_recommend_include_exclude_titles(client: Client, scorer: Any) -> None:
    user = int(known_users(scorer, 1)[0])
    base = client.recommend(user, k=5)[0]
    excluded = client.recommend(user, k=5, exclude=base.movie_ids[:2])[0]
    assert not set(base.movie_ids[:2].tolist()) & set(excluded.movie_ids.tolist())
    allowed = scorer.items.raw[:20]
    inc = client.recommend(user, k=5, include=allowed, titles=True)[0]
    assert set(inc.movie_ids.tolist()) <= set(allowed.tolist())
    assert inc.titles is not None and len(inc.titles) == len(inc)
    title_of = dict(zip(scorer.items.raw.tolist(), scorer.catalog.titles, strict=True))
    assert list(inc.titles) == [title_of[m] for m in inc.movie_ids.tolist()]


def test_recommend_for_ratings_and_predict_match_scorer(client: Client, scorer: Any) -> None:
    raw = scorer.items.raw
    vec = {int(raw[0]): 5.0, int(raw[3]): 4.0, int(raw[7]): 1.0}
    recs = client.recommend_for_ratings([vec, {int(raw[1]): 2.0}], k=8)
    assert len(recs) == 2 and recs[0].user_id is None
    csr = Csr.from_coo([0, 0, 0, 1], [0, 3, 7, 1], [5.0, 4.0, 1.0, 2.0], 2, len(raw))
    items, scores = scorer.topk(csr, 8)
    for r, it, sc in zip(recs, items, scores, strict=True):
        np.testing.assert_array_equal(r.movie_ids, raw[it[it >= 0]])
        np.testing.assert_allclose(r.scores, sc[it >= 0], rtol=1e-5, atol=1e-6)
    assert not {int(raw[0]), int(raw[3]), int(raw[7])} & set(recs[0].movie_ids.tolist())

    targets = [int(raw[10]), int(raw[2]), int(raw[0])]
    pred = client.predict(vec, targets)
    np.testing.assert_array_equal(pred.movie_ids, targets)
    expected = scorer.predict(
        csr.rows([0]), Csr(np.array([0, 3]), np.array([10, 2, 0]), np.ones(3, np.float32), len(raw))
    )
    np.testing.assert_allclose(pred.ratings, expected, rtol=1e-5)
    assert np.all((pred.ratings >= 1) & (pred.ratings <= 5))
    many = client.predict([vec, {}], [[int(raw[10])], [int(raw[2]), int(raw[4])]])
    assert [len(p) for p in many] == [1, 2]
    assert set(pred.as_dict()) == set(targets)


def test_stream_tags_results_and_reports_errors_per_request(client: Client, scorer: Any) -> None:
    users = known_users(scorer, 5).tolist()
    raw = scorer.items.raw
    queries: list[Any] = [RecommendQuery([u], k=3, request_id=f"u{u}") for u in users]
    queries.append(RatingsQuery({int(raw[0]): 4.0}, k=2, predict=[int(raw[1])], request_id="anon"))
    queries.append(RecommendQuery([-999], k=3, request_id="bad"))
    results = {r.request_id: r for r in client.stream(queries)}
    assert set(results) == {*(f"u{u}" for u in users), "anon", "bad"}
    for u in users:
        res = results[f"u{u}"]
        assert res.ok and res.recommendations is not None
        assert res.recommendations[0].user_id == u
        expected = client.recommend(u, k=3)[0]
        np.testing.assert_array_equal(res.recommendations[0].movie_ids, expected.movie_ids)
    anon = results["anon"]
    assert anon.recommendations is not None and anon.predictions is not None
    assert len(anon.recommendations[0]) == 2 and anon.predictions[0].movie_ids.tolist() == [int(raw[1])]
    bad = results["bad"]
    assert bad.error is not None and bad.error.code == grpc.StatusCode.NOT_FOUND


def test_stream_cancellation_keeps_server_serving(client: Client, scorer: Any) -> None:
    user = int(known_users(scorer, 1)[0])

    def endless() -> Any:
        i = 0
        while True:
            yield RecommendQuery([user], k=3, request_id=str(i))
            i += 1

    it = client.stream(endless())
    got = [next(it) for _ in range(20)]
    assert all(r.ok for r in got)
    it.close()  # cancels the call
    assert client.recommend(user, k=3)[0].user_id == user


def test_async_client(server: Any, scorer: Any) -> None:
    users = known_users(scorer, 4).tolist()

    async def main() -> None:
        async with AsyncClient(server.target, timeout=10) as ac:
            assert await ac.health() == "SERVING"
            info = await ac.model_info()
            assert info.version == scorer.info.version
            recs = await asyncio.gather(*(ac.recommend(u, k=4) for u in users))
            assert [r[0].user_id for r in recs] == users
            out = [r async for r in ac.stream([RecommendQuery([u], k=2) for u in users])]
            assert sorted(r.request_id for r in out) == ["0", "1", "2", "3"]
            with pytest.raises(MovieRecError) as exc:
                await ac.recommend(-5)
            assert exc.value.code == grpc.StatusCode.NOT_FOUND
            movies = await ac.movies([int(scorer.items.raw[0])])
            assert len(movies) == 1

    asyncio.run(main())


def test_reflection_lists_services(server: Any) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(server.target) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"movierec.v1.RecommenderService", "grpc.health.v1.Health"} <= services
        desc = db.FindFileContainingSymbol("movierec.v1.RecommenderService")
        assert desc.name == "movierec/v1/recommender_service.proto"


def test_unavailable_server_raises_sdk_error() -> None:
    with Client("127.0.0.1:1", timeout=2) as c, pytest.raises(MovieRecError) as exc:
        c.model_info()
    assert exc.value.code == grpc.StatusCode.UNAVAILABLE
    assert not isinstance(exc.value, grpc.RpcError)


def _same(a: Any, b: Any) -> bool:
    """Two Recommendations: same model, users, movies and (to float precision) scores."""
    return a.model_version == b.model_version and len(a) == len(b) and all(
        x.user_id == y.user_id and np.array_equal(x.movie_ids, y.movie_ids) and np.allclose(x.scores, y.scores, rtol=1e-6)
        for x, y in zip(a, b, strict=True)
    )


async def _same_as_alone(plain: AsyncClient, co: AsyncClient, users: list[int], k: int = 4) -> list[Any]:
    """Concurrent recommend calls through the coalescing client `co` each get what a lone call gets; returns the
    lone answers."""
    alone = await asyncio.gather(*(plain.recommend(u, k=k) for u in users))
    together = await asyncio.gather(*(co.recommend(u, k=k) for u in users))
    assert all(_same(a, b) for a, b in zip(together, alone, strict=True))
    return alone


def test_async_client_coalescing_answers_each_caller_as_alone(server: Any, scorer: Any) -> None:
    """AsyncClient(coalesce_ms=...) against the real server: the same lists as one call per user, fewer RPCs,
    and an unknown user's NOT_FOUND for that caller only."""
    users = known_users(scorer, 12).tolist()

    async def main() -> None:
        async with AsyncClient(server.target, timeout=10) as plain, \
                AsyncClient(server.target, timeout=10, coalesce_ms=5, coalesce_max_users=8) as co:  # fmt: skip
            await _same_as_alone(plain, co, users)
            assert co._coalescer is not None and co._coalescer.rpcs == 2  # 12 users in groups of at most 8
            out = await asyncio.gather(co.recommend(users[0], k=3), co.recommend(-5, k=3),
                                       co.recommend(users[1], k=3), return_exceptions=True)  # fmt: skip
            assert _same(out[0], await plain.recommend(users[0], k=3))
            assert _same(out[2], await plain.recommend(users[1], k=3))
            assert isinstance(out[1], MovieRecError) and out[1].code == grpc.StatusCode.NOT_FOUND

    asyncio.run(main())


def test_async_client_coalescing_learns_a_smaller_users_per_call_limit(make_server: Any, scorer: Any) -> None:
    """A server taking 3 users per call refuses the SDK's first group of 8 once; the SDK asks the limit, sends
    that group again in parts of at most 3, and forms groups of at most 3 from then on."""
    srv = make_server(max_users_per_call=3)
    users = known_users(scorer, 8).tolist()

    async def main() -> None:
        async with AsyncClient(srv.target, timeout=10) as plain, \
                AsyncClient(srv.target, timeout=10, coalesce_ms=5, coalesce_max_users=8) as co:  # fmt: skip
            await _same_as_alone(plain, co, users)
            assert co._coalescer is not None
            assert co._coalescer.server_max_users == 3 and co._coalescer.max_users == 3
            assert co._coalescer.rpcs == 4  # the refused group of 8, then 3 + 3 + 2
            await _same_as_alone(plain, co, users)
            assert co._coalescer.rpcs == 7  # groups of 3 + 3 + 2 at once, nothing refused

    asyncio.run(main())


def test_async_client_coalesces_ratings_calls_and_predictions(server: Any, scorer: Any) -> None:
    """recommend_for_ratings and predict through AsyncClient(coalesce_ms=...): the same answers as uncoalesced
    calls, fewer RPCs, and a rating off the model's scale refused for that caller only."""
    raw = [int(x) for x in scorer.items.raw[:12]]
    vectors = [{raw[i]: 4.0, raw[i + 1]: 2.0} for i in range(8)]
    top = float(scorer.rating_scale.max)

    async def main() -> None:
        async with AsyncClient(server.target, timeout=10) as plain, \
                AsyncClient(server.target, timeout=10, coalesce_ms=5) as co:  # fmt: skip
            alone = await asyncio.gather(*(plain.recommend_for_ratings(v, k=5) for v in vectors))
            together = await asyncio.gather(*(co.recommend_for_ratings(v, k=5) for v in vectors))
            assert all(_same(a, b) for a, b in zip(together, alone, strict=True))
            assert co._ratings_coalescer is not None and co._ratings_coalescer.rpcs == 1
            targets = [raw[10], raw[11]]
            p_alone = await asyncio.gather(*(plain.predict(v, targets) for v in vectors[:3]))
            p_together = await asyncio.gather(*(co.predict(v, targets) for v in vectors[:3]))
            for a, b in zip(p_together, p_alone, strict=True):
                assert isinstance(a, type(b)) and np.allclose(a.ratings, b.ratings, rtol=1e-6)
            assert co._ratings_coalescer.rpcs == 2  # the three predictions: one more RPC
            out = await asyncio.gather(co.recommend_for_ratings(vectors[0], k=5),
                                       co.recommend_for_ratings({raw[0]: top + 10.0}, k=5),
                                       return_exceptions=True)  # fmt: skip
            assert _same(out[0], alone[0])
            assert isinstance(out[1], MovieRecError) and out[1].code == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(main())
