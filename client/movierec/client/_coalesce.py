"""Coalescing the async SDK's concurrent calls into batched RPCs (opt-in): `recommend` into `Recommend`,
`recommend_for_ratings` and `predict` into `RecommendForRatings`.

A service that answers each of its own requests with `await client.recommend(user_id)` sends one RPC per
user, and the server's per-call cost dominates: on the 2-core test machine one worker served 3,000-4,000 such
calls/s against 25,000-28,000 users/s through calls of 32 users (README, Performance). With
`AsyncClient(coalesce_ms=1)`, calls made within a millisecond of each other with the same parameters (k,
exclude, include, titles, timeout) go out as one RPC with all their users (or rating vectors), and each
caller gets its own lists back, as if it had called alone:

- The window starts with the first call of a group; the group goes out when the window ends or as soon as it
  holds `max_users` users. A call with more users than that alone goes out on its own, at once.
- The RPC's deadline is the first caller's: its timeout counted from when it called, not from the send.
- If the server refuses the batched call for something in one caller's users (INVALID_ARGUMENT, NOT_FOUND:
  an unknown user), every caller's own request is sent again on its own, so each gets its own answer or error.
  Any other failure (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...) is every caller's error.
- A caller that is cancelled while it waits is left out of the answer; the others are not affected.
- A server that takes fewer users per call (`--max-users-per-call`) than `max_users` refuses a full group with
  INVALID_ARGUMENT. The first such refusal asks the server's limit once (`server_limit`, GetModelInfo's
  `limits.max_users_per_call` in the SDK); when the group was over it, the group goes again in parts within
  it and later groups are capped at it.

Off by default: a lone caller waits up to the window for company that may not come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio

from movierec.v1 import recommender_service_pb2 as pb

Req = TypeVar("Req", pb.RecommendRequest, pb.RecommendForRatingsRequest)
Resp = TypeVar("Resp", pb.RecommendResponse, pb.RecommendForRatingsResponse)
# a batched call refused for one caller's input: each caller's request is retried alone
PER_CALLER_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})


@dataclass(frozen=True)
class Shape(Generic[Req, Resp]):
    """How requests of one RPC merge into one and its answer splits back: `rows` is a request's repeated field
    of rows (users, or rating vectors), `answers` the response's repeated field with one entry per row; every
    other field of the request is what callers must share."""

    request: type[Req]
    response: type[Resp]
    rows: Callable[[Req], Any]
    answers: Callable[[Resp], Any]

    def count(self, request: Req) -> int:
        return len(self.rows(request))

    def template(self, request: Req) -> Req:
        """The request without its rows."""
        out = self.request()
        out.CopyFrom(request)
        del self.rows(out)[:]
        return out

    def merge(self, template: Req, parts: Sequence[Req]) -> Req:
        """The template with every part's rows, in order."""
        out = self.request()
        out.CopyFrom(template)
        for p in parts:
            self.rows(out).extend(self.rows(p))
        return out

    def part(self, response: Resp, start: int, end: int) -> Resp:
        """Rows start:end of the answer, with its model version."""
        out = self.response(model_version=response.model_version)
        self.answers(out).extend(self.answers(response)[start:end])
        return out


RECOMMEND = Shape(pb.RecommendRequest, pb.RecommendResponse, lambda r: r.user_ids, lambda r: r.recommendations)
RATINGS = Shape(pb.RecommendForRatingsRequest, pb.RecommendForRatingsResponse, lambda r: r.queries,
                lambda r: r.results)  # fmt: skip


@dataclass
class _Group(Generic[Req, Resp]):
    template: Req  # the shared parameters (no rows)
    timeout: float | None
    started: float  # loop time of the first call
    requests: list[Req] = field(default_factory=list)
    futures: list[asyncio.Future[Resp]] = field(default_factory=list)
    users: int = 0
    timer: asyncio.TimerHandle | None = None


class Coalescer(Generic[Req, Resp]):
    """Groups concurrent requests of one RPC with equal parameters into one call (see the module docstring).

    `send(request, timeout)` makes the RPC; each `call` returns the caller's own response: its lists (or
    results), in its order, and the model version. `shape` says how the RPC's requests merge (RECOMMEND,
    RATINGS); "users" below are its rows."""

    def __init__(
        self,
        send: Callable[[Req, float | None], Awaitable[Resp]],
        window_s: float,
        max_users: int,
        server_limit: Callable[[], Awaitable[int]] | None = None,
        *,
        shape: Shape[Req, Resp],
    ) -> None:
        if window_s < 0 or max_users < 1:
            raise ValueError(f"coalescing needs a window >= 0 and max_users >= 1, got {window_s}, {max_users}")
        self._send: Callable[[Req, float | None], Awaitable[Resp]] = send
        self._shape: Shape[Req, Resp] = shape
        self._server_limit = server_limit
        self.server_max_users: int | None = None  # the server's limit, once asked
        self.window_s = window_s
        self.max_users = max_users
        self._groups: dict[tuple[bytes, float | None], _Group[Req, Resp]] = {}
        self._flushes: set[asyncio.Task[None]] = set()
        self.rpcs = 0  # batched RPCs sent (a retry of one caller alone counts too)

    async def call(self, request: Req, timeout: float | None) -> Resp:
        n = self._shape.count(request)
        if n >= self.max_users:
            self.rpcs += 1
            return await self._send(request, timeout)
        template = self._shape.template(request)
        key = (template.SerializeToString(deterministic=True), timeout)
        loop = asyncio.get_running_loop()
        group = self._groups.get(key)
        if group is not None and group.users + n > self.max_users:
            self._flush(key)  # full: it goes now, this call starts the next group
            group = None
        if group is None:
            group = self._groups[key] = _Group(template, timeout, loop.time())
            group.timer = loop.call_later(self.window_s, self._flush, key)
        future: asyncio.Future[Resp] = loop.create_future()
        group.requests.append(request)
        group.futures.append(future)
        group.users += n
        if group.users >= self.max_users:
            self._flush(key)
        return await future

    def _flush(self, key: tuple[bytes, float | None]) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(group))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def aclose(self) -> None:
        """Send every group now and wait for their answers (before the channel closes)."""
        for key in list(self._groups):
            self._flush(key)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def _run(self, group: _Group[Req, Resp]) -> None:
        live = [(r, f) for r, f in zip(group.requests, group.futures, strict=True) if not f.done()]
        if not live:
            return
        timeout = group.timeout
        if timeout is not None:  # the first caller's deadline
            timeout = max(timeout - (asyncio.get_running_loop().time() - group.started), 0.0)
        await self._batched(group.template, live, timeout, learn=True)

    async def _batched(self, template: Req, live: list[tuple[Req, asyncio.Future[Resp]]], timeout: float | None,
                       *, learn: bool) -> None:  # fmt: skip
        """One RPC for the callers in `live` (a lone caller's own request as it is), each answered with its share;
        `learn`: a refusal may be the server's users-per-call limit, to be asked once and respected."""
        if len(live) == 1:
            await self._answer(live[0][1], self._send(live[0][0], timeout))
            return
        request = self._shape.merge(template, [r for r, _ in live])
        self.rpcs += 1
        try:
            response = await self._send(request, timeout)
        except grpc.aio.AioRpcError as err:
            if learn and err.code() == grpc.StatusCode.INVALID_ARGUMENT and await self._over_limit(self._shape.count(request)):
                # the group was larger than the server takes: smaller groups, from now on too
                await asyncio.gather(*(self._batched(template, part, timeout, learn=False) for part in self._split(live)))
            elif err.code() in PER_CALLER_CODES:  # one caller's input: each one alone, for its own answer
                await asyncio.gather(*(self._answer(f, self._send(r, timeout)) for r, f in live))
            else:
                for _, f in live:
                    if not f.done():
                        f.set_exception(err)
            return
        except BaseException as exc:  # noqa: BLE001 (every caller learns why, whatever it was)
            for _, f in live:
                if not f.done():
                    f.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        start = 0
        for r, f in live:
            end = start + self._shape.count(r)
            if not f.done():
                f.set_result(self._shape.part(response, start, end))
            start = end

    async def _over_limit(self, users: int) -> bool:
        """Whether the server's most users per call (asked through `server_limit` until it answers once) is
        below `users`; if so, groups are capped at it from now on."""
        if self._server_limit is None:
            return False
        if self.server_max_users is None:
            try:
                self.server_max_users = int(await self._server_limit())
            except Exception:  # noqa: BLE001 (not known now: callers retried alone; asked again at the next refusal)
                return False
            if self.server_max_users > 0:
                self.max_users = min(self.max_users, self.server_max_users)
        return 0 < self.server_max_users < users

    def _split(self, live: list[tuple[Req, asyncio.Future[Resp]]]) -> list[list[tuple[Req, asyncio.Future[Resp]]]]:
        """`live` in order, in parts of at most `max_users` users (a caller with more is a part alone)."""
        parts: list[list[tuple[Req, asyncio.Future[Resp]]]] = [[]]
        users = 0
        for caller in live:
            n = self._shape.count(caller[0])
            if parts[-1] and users + n > self.max_users:
                parts.append([])
                users = 0
            parts[-1].append(caller)
            users += n
        return parts

    async def _answer(self, future: asyncio.Future[Resp], call: Awaitable[Resp]) -> None:
        self.rpcs += 1
        try:
            response = await call
        except BaseException as exc:  # noqa: BLE001 (the caller's own error)
            if not future.done():
                future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if not future.done():
            future.set_result(response)
