"""The async SDK's call coalescing (`movierec.client._coalesce.Coalescer`) against a fake RPC: grouping by
parameters, the split of the answer, the size cap, the deadline, errors per caller, cancellation.

No test depends on the window's length: calls started by one `asyncio.gather` all join their group in one
loop iteration, before the window's timer can fire in a later one."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest

from movierec.client._coalesce import RATINGS, RECOMMEND, Coalescer
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import types_pb2 as types

UNKNOWN = 999


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class FakeServer:
    """Answers Recommend like the server: one list per user (movie ids derived from the user and k), NOT_FOUND
    for an unknown user anywhere in the call, or `fail` for every call when set."""

    def __init__(self, fail: grpc.StatusCode | None = None, max_users: int = 1000) -> None:
        self.calls: list[tuple[list[int], float | None]] = []
        self.max_users = max_users  # as --max-users-per-call: a larger call is INVALID_ARGUMENT
        self.limit_asked = 0
        self.fail = fail
        self.release: asyncio.Event | None = None  # when set: calls wait for it
        self.arrived: asyncio.Event | None = None  # when set: set as a call arrives

    async def send(self, req: pb.RecommendRequest, timeout: float | None) -> pb.RecommendResponse:
        self.calls.append((list(req.user_ids), timeout))
        if self.arrived is not None:
            self.arrived.set()
        if self.release is not None:
            await self.release.wait()
        if self.fail is not None:
            raise _error(self.fail, "server says no")
        if len(req.user_ids) > self.max_users:
            raise _error(grpc.StatusCode.INVALID_ARGUMENT, f"user_ids: {len(req.user_ids)} users; at most {self.max_users}")
        if any(u < 0 for u in req.user_ids):
            raise _error(grpc.StatusCode.INVALID_ARGUMENT, "user_ids: ids are positive")
        if UNKNOWN in req.user_ids:
            raise _error(grpc.StatusCode.NOT_FOUND, f"user_ids: unknown user {UNKNOWN}")
        lists = [types.RecommendationList(user_id=u, movie_ids=[u * 100 + i for i in range(req.k)],
                                          scores=[1.0] * req.k) for u in req.user_ids]  # fmt: skip
        return pb.RecommendResponse(model_version="v1", recommendations=lists)


    async def limit(self) -> int:  # GetModelInfo's limits.max_users_per_call
        self.limit_asked += 1
        return self.max_users


def _req(users: list[int], k: int = 3, exclude: tuple[int, ...] = ()) -> pb.RecommendRequest:
    return pb.RecommendRequest(user_ids=users, k=k, exclude_movie_ids=list(exclude))


def _users(resp: pb.RecommendResponse) -> list[int]:
    return [r.user_id for r in resp.recommendations]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_concurrent_calls_with_equal_parameters_go_out_as_one_rpc_and_each_gets_its_own_lists() -> None:
    fake = FakeServer()

    async def main() -> list[pb.RecommendResponse]:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, shape=RECOMMEND)
        return await asyncio.gather(co.call(_req([1]), 5.0), co.call(_req([2, 3]), 5.0),
                                    co.call(_req([4]), 5.0))  # fmt: skip

    out = run(main())
    assert [_users(r) for r in out] == [[1], [2, 3], [4]]
    assert [list(r.recommendations[0].movie_ids) for r in out] == [[100, 101, 102], [200, 201, 202], [400, 401, 402]]
    assert all(r.model_version == "v1" for r in out)
    assert [users for users, _ in fake.calls] == [[1, 2, 3, 4]]


def test_different_parameters_are_different_rpcs() -> None:
    fake = FakeServer()

    async def main() -> list[pb.RecommendResponse]:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, shape=RECOMMEND)
        return await asyncio.gather(co.call(_req([1], k=3), 5.0), co.call(_req([2], k=4), 5.0),
                                    co.call(_req([3], exclude=(7,)), 5.0), co.call(_req([4]), 9.0),
                                    co.call(_req([5], k=3), 5.0))  # fmt: skip

    out = run(main())
    assert [len(r.recommendations[0].movie_ids) for r in out] == [3, 4, 3, 3, 3]
    assert sorted(users for users, _ in fake.calls) == [[1, 5], [2], [3], [4]]


def test_a_full_group_goes_at_once_and_a_large_call_alone() -> None:
    fake = FakeServer()

    async def main() -> None:
        co = Coalescer(fake.send, window_s=3600.0, max_users=4, shape=RECOMMEND)  # the window never ends within the test
        out = await asyncio.gather(co.call(_req([1, 2]), None), co.call(_req([3, 4]), None))
        assert [_users(r) for r in out] == [[1, 2], [3, 4]]
        big = await co.call(_req([5, 6, 7, 8, 9]), None)
        assert _users(big) == [5, 6, 7, 8, 9]
        # three calls of 2 + 2 + 1 users: the third does not fit beside the first two and starts a new group,
        # which close() sends without waiting for the window
        task = asyncio.gather(co.call(_req([10, 11]), None), co.call(_req([12, 13]), None),
                              co.call(_req([14]), None))  # fmt: skip
        closing = asyncio.ensure_future(co.aclose())  # scheduled after the three calls' first steps (FIFO)
        assert [_users(r) for r in await task] == [[10, 11], [12, 13], [14]]
        await closing

    run(main())
    assert [users for users, _ in fake.calls] == [[1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13], [14]]


def test_the_rpc_deadline_is_the_first_callers() -> None:
    fake = FakeServer()

    async def main() -> None:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, shape=RECOMMEND)
        await asyncio.gather(co.call(_req([1]), 5.0), co.call(_req([2]), 5.0))

    run(main())
    ((_, timeout),) = fake.calls
    assert timeout is not None and 0 < timeout <= 5.0  # counted from the first call, not from the send


def test_a_refusal_caused_by_one_caller_is_answered_per_caller() -> None:
    fake = FakeServer()

    async def main() -> list[Any]:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, shape=RECOMMEND)
        return await asyncio.gather(co.call(_req([1]), None), co.call(_req([UNKNOWN]), None),
                                    co.call(_req([3]), None), return_exceptions=True)  # fmt: skip

    ok1, bad, ok3 = run(main())
    assert _users(ok1) == [1] and _users(ok3) == [3]
    assert isinstance(bad, grpc.aio.AioRpcError) and bad.code() == grpc.StatusCode.NOT_FOUND
    assert str(UNKNOWN) in (bad.details() or "")
    assert [users for users, _ in fake.calls] == [[1, UNKNOWN, 3], [1], [UNKNOWN], [3]]


def test_any_other_failure_is_every_callers_error() -> None:
    fake = FakeServer(fail=grpc.StatusCode.UNAVAILABLE)

    async def main() -> list[Any]:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, shape=RECOMMEND)
        return await asyncio.gather(co.call(_req([1]), None), co.call(_req([2]), None),
                                    return_exceptions=True)  # fmt: skip

    out = run(main())
    assert all(isinstance(e, grpc.aio.AioRpcError) and e.code() == grpc.StatusCode.UNAVAILABLE for e in out)
    assert len(fake.calls) == 1  # not retried one by one: it was not about one caller's input


def test_a_cancelled_caller_is_left_out_and_the_others_are_answered() -> None:
    fake = FakeServer()

    async def main() -> None:
        fake.release, fake.arrived = asyncio.Event(), asyncio.Event()
        co = Coalescer(fake.send, window_s=0.001, max_users=64, shape=RECOMMEND)
        first = asyncio.ensure_future(co.call(_req([1]), None))
        second = asyncio.ensure_future(co.call(_req([2]), None))
        await fake.arrived.wait()  # the batched RPC is in flight (the window has ended)
        first.cancel()
        fake.release.set()
        assert _users(await second) == [2]
        with pytest.raises(asyncio.CancelledError):
            await first

    run(main())
    assert [users for users, _ in fake.calls] == [[1, 2]]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window >= 0 and max_users >= 1"):
        Coalescer(FakeServer().send, window_s=0.001, max_users=0, shape=RECOMMEND)


def test_a_server_taking_fewer_users_per_call_is_asked_once_and_respected() -> None:
    fake = FakeServer(max_users=4)

    async def main() -> tuple[list[pb.RecommendResponse], list[pb.RecommendResponse], Coalescer]:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, server_limit=fake.limit, shape=RECOMMEND)
        first = await asyncio.gather(*(co.call(_req([u]), 5.0) for u in range(1, 11)))
        second = await asyncio.gather(*(co.call(_req([u]), 5.0) for u in range(11, 21)))
        return first, second, co

    first, second, co = run(main())
    assert [_users(r) for r in first] == [[u] for u in range(1, 11)]
    assert [_users(r) for r in second] == [[u] for u in range(11, 21)]
    assert fake.limit_asked == 1 and co.server_max_users == 4 and co.max_users == 4
    # the first group of 10 was refused, then went again in parts within the limit; the next groups fit at once
    assert [users for users, _ in fake.calls] == [
        list(range(1, 11)), [1, 2, 3, 4], [5, 6, 7, 8], [9, 10],
        [11, 12, 13, 14], [15, 16, 17, 18], [19, 20],
    ]  # fmt: skip


def test_a_refusal_within_the_servers_limit_is_still_answered_per_caller() -> None:
    fake = FakeServer(max_users=100)

    async def main() -> list[Any]:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, server_limit=fake.limit, shape=RECOMMEND)
        return await asyncio.gather(*(co.call(_req([u]), 5.0) for u in (1, UNKNOWN, 3)), return_exceptions=True)

    out = run(main())
    assert _users(out[0]) == [1] and _users(out[2]) == [3]
    assert isinstance(out[1], grpc.aio.AioRpcError) and out[1].code() == grpc.StatusCode.NOT_FOUND
    assert fake.limit_asked == 0  # NOT_FOUND is not about the size: nothing asked


def test_an_invalid_argument_under_the_limit_asks_once_then_retries_per_caller() -> None:
    fake = FakeServer(max_users=100)

    async def main() -> tuple[list[Any], list[Any], Coalescer]:
        co = Coalescer(fake.send, window_s=0.001, max_users=64, server_limit=fake.limit, shape=RECOMMEND)
        first = await asyncio.gather(*(co.call(_req([u]), 5.0) for u in (1, -5, 3)), return_exceptions=True)
        second = await asyncio.gather(*(co.call(_req([u]), 5.0) for u in (4, -6)), return_exceptions=True)
        return first, second, co

    first, second, co = run(main())
    assert _users(first[0]) == [1] and _users(first[2]) == [3] and _users(second[0]) == [4]
    for bad in (first[1], second[1]):
        assert isinstance(bad, grpc.aio.AioRpcError) and bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.limit_asked == 1  # asked at the first refusal only
    assert co.max_users == 64  # the server takes 100: nothing lowered
    assert [users for users, _ in fake.calls] == [[1, -5, 3], [1], [-5], [3], [4, -6], [4], [-6]]


def test_ratings_calls_coalesce_into_one_recommend_for_ratings_and_each_gets_its_own_results() -> None:
    """RATINGS: the queries of concurrent callers (one or several each) go out as one request; each caller gets
    the results of its own queries, in order."""
    sent: list[int] = []

    async def send(req: pb.RecommendForRatingsRequest, timeout: float | None) -> pb.RecommendForRatingsResponse:
        sent.append(len(req.queries))
        results = [pb.RatingsResult(recommendations=types.RecommendationList(
                       movie_ids=[int(q.ratings.movie_ids[0]) * 10 + i for i in range(req.k)]))
                   for q in req.queries]  # fmt: skip
        return pb.RecommendForRatingsResponse(model_version="v2", results=results)

    def query(*movies: int) -> pb.RatingsQuery:
        return pb.RatingsQuery(ratings=types.RatingVector(movie_ids=list(movies), ratings=[4.0] * len(movies)))

    async def main() -> list[pb.RecommendForRatingsResponse]:
        co = Coalescer(send, window_s=0.001, max_users=64, shape=RATINGS)
        reqs = [pb.RecommendForRatingsRequest(queries=[query(1)], k=2),
                pb.RecommendForRatingsRequest(queries=[query(2, 5), query(3)], k=2),
                pb.RecommendForRatingsRequest(queries=[query(4)], k=2)]  # fmt: skip
        return await asyncio.gather(*(co.call(r, 5.0) for r in reqs))

    out = run(main())
    assert sent == [4]
    assert [[list(r.recommendations.movie_ids) for r in resp.results] for resp in out] == [
        [[10, 11]], [[20, 21], [30, 31]], [[40, 41]]
    ]
    assert all(resp.model_version == "v2" for resp in out)
