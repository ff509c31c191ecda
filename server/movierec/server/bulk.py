"""ScoreAll: stream the top-K lists of every known user (or one shard) in columnar chunks, paced by the client.

The users of a run are a contiguous range of dense user indices (all users, shard i of n, or a raw-id range
mapped with searchsorted on the sorted id map), scored in ascending order, `chunk_users` at a time, through
the same `Scorer.topk` as Recommend (already-rated movies masked on the device; movies added while serving
are candidates, scored for each user with the stored profile as Recommend does). A cursor is the dense index
of the next user plus the run's range, k and model version, so a resume continues exactly after the last
chunk the client kept and is refused against another model (FAILED_PRECONDITION) or another run.

Flow control: the handler is an async generator; grpc.aio asks for the next message only once the previous
one has been handed to the transport, which stalls when the client stops reading (HTTP/2 window). Scoring
runs in a dedicated worker thread (so the event loop keeps serving online calls) and is at most one chunk
ahead of the chunk being sent, so the server holds at most two chunks at a time however many users there
are. Deadline or cancellation: grpc cancels the generator; the chunk being scored in the thread finishes
and is dropped, nothing more is scored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from movierec.server import validation as v
from movierec.server.engine import Engine, ScorerLike, known_user_profiles
from movierec.server.errors import ErrorCode, RequestError, invalid
from movierec.v1 import bulk_pb2 as bulk

DEFAULT_CHUNK_USERS = 1024
MAX_CHUNK_USERS = 16384
PREFETCH = 1  # chunks scored ahead of the one being sent


@dataclass(frozen=True)
class BulkPlan:
    """One ScoreAll run: dense users [start, end), continuing at `next`, `chunk` users per message."""

    start: int
    end: int
    next: int
    k: int
    chunk: int
    version: str
    scorer: ScorerLike  # pinned for the whole stream: a hot model swap does not change a running stream


def _range(request: bulk.ScoreAllRequest, scorer: ScorerLike) -> tuple[int, int]:
    n = len(scorer.users)
    which = request.WhichOneof("selection")
    if which == "shard":
        i, count = request.shard.index, request.shard.count
        if count < 1:
            raise invalid(f"shard.count: {count}; must be >= 1")
        if not 0 <= i < count:
            raise invalid(f"shard.index: {i}; must be in [0, {count}) for shard.count={count}")
        return i * n // count, (i + 1) * n // count
    if which == "user_range":
        lo, hi = request.user_range.start_user_id, request.user_range.end_user_id
        if hi <= lo:
            raise invalid(f"user_range: end_user_id {hi} must be > start_user_id {lo}")
        raw = scorer.users.raw
        return int(np.searchsorted(raw, lo, "left")), int(np.searchsorted(raw, hi, "left"))
    return 0, n


def plan(request: bulk.ScoreAllRequest, scorer: ScorerLike, version: str, max_message_bytes: int) -> BulkPlan:
    """Validate a ScoreAll request into a plan; raises RequestError naming the offending field."""
    n_items = len(scorer.items)
    v.check_k(request.k, n_items)
    k = int(request.k)
    start, end = _range(request, scorer)
    per_user = 8 + 12 * k  # user id + k movie ids (int64) + k scores (float32)
    fit = max(1, (max_message_bytes - 4096) // per_user)
    if request.chunk_users < 0 or request.chunk_users > MAX_CHUNK_USERS:
        raise invalid(f"chunk_users: {request.chunk_users}; must be in [0, {MAX_CHUNK_USERS}] (0 = default)")
    chunk = min(request.chunk_users or DEFAULT_CHUNK_USERS, fit)
    nxt = start
    if request.HasField("resume_from"):
        c = request.resume_from
        if c.model_version != version:
            raise RequestError(
                ErrorCode.FAILED_PRECONDITION,
                f"resume_from.model_version: {c.model_version!r}, but the server runs model {version!r}; "
                "a run cannot be resumed on another model, start it over",
            )
        if (c.range_start, c.range_end, c.k) != (start, end, k):
            raise invalid(
                f"resume_from: the cursor is for users [{c.range_start}, {c.range_end}) with k={c.k}, this "
                f"request selects [{start}, {end}) with k={k}; resume with the original shard/range and k"
            )
        if not start <= c.next_user_index <= end:
            raise invalid(f"resume_from.next_user_index: {c.next_user_index}; must be in [{start}, {end}]")
        nxt = int(c.next_user_index)
    return BulkPlan(start, end, nxt, k, chunk, version, scorer)


def score_chunk(p: BulkPlan, lo: int, hi: int) -> bulk.ScoreAllChunk:
    """Score dense users [lo, hi) and encode the chunk (vectorized; runs in the worker thread)."""
    scorer = p.scorer
    users = np.arange(lo, hi, dtype=np.int64)
    profiles = known_user_profiles(scorer, users)  # movies added while serving: scored for each user too
    if profiles is None:
        items, scores = scorer.topk(scorer.history.rows(users), p.k)
    else:
        items, scores = scorer.topk(scorer.history.rows(users), p.k, profiles=profiles)
    items = np.asarray(items, dtype=np.int64)
    valid = items >= 0
    movie_ids = np.where(valid, scorer.items.raw[np.maximum(items, 0)], -1).astype("<i8", copy=False)
    return bulk.ScoreAllChunk(
        model_version=p.version,
        n_users=hi - lo,
        k=p.k,
        user_ids=scorer.users.raw[lo:hi].astype("<i8", copy=False).tobytes(),
        movie_ids=np.ascontiguousarray(movie_ids).tobytes(),
        scores=np.ascontiguousarray(scores, dtype="<f4").tobytes(),
        cursor=bulk.ScoreAllCursor(
            model_version=p.version, range_start=p.start, range_end=p.end, next_user_index=hi, k=p.k
        ),
        users_done=hi - p.start,
        users_total=p.end - p.start,
    )


class BulkScorer:
    """Runs ScoreAll streams for one engine on its own worker thread (separate from the online batcher)."""

    def __init__(self, engine: Engine, executor: Executor | None = None) -> None:
        self.engine = engine
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="movierec-bulk")
        self.chunks_scored = 0  # for tests and benchmarks

    def plan(self, request: bulk.ScoreAllRequest) -> BulkPlan:
        model = self.engine.model  # one consistent (scorer, version) snapshot
        return plan(request, model.scorer, str(model.version), self.engine.settings.max_message_bytes)

    async def stream(self, p: BulkPlan) -> AsyncIterator[bulk.ScoreAllChunk]:
        """Chunks of the plan in order; scoring stays at most PREFETCH chunks ahead of what was yielded."""
        loop = asyncio.get_running_loop()
        bounds = iter(range(p.next, p.end, p.chunk))
        pending: list[asyncio.Future[bulk.ScoreAllChunk]] = []

        def submit() -> None:
            lo = next(bounds, None)
            if lo is not None:
                hi = min(lo + p.chunk, p.end)
                pending.append(loop.run_in_executor(self._executor, score_chunk, p, lo, hi))

        try:
            for _ in range(1 + PREFETCH):
                submit()
            while pending:
                chunk = await pending.pop(0)
                self.chunks_scored += 1
                submit()  # score the next chunk while this one is being sent
                yield chunk
        finally:
            for f in pending:
                f.cancel()  # not started yet: never scored; running: finishes and is dropped
