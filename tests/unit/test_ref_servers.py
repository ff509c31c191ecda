"""bench.ref_servers: the batched echo answers as the echo does, through movierec's batcher (in-process)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench` is not installed

from bench.ref_servers import BatchedEcho, Echo  # noqa: E402
from movierec.v1 import recommender_service_pb2 as pb  # noqa: E402


def test_batched_echo_answers_as_echo_through_the_batcher() -> None:
    requests = [pb.RecommendRequest(user_ids=[u, u + 1][: 1 + u % 2], k=3 + u % 5) for u in range(12)]
    context: Any = None  # neither server reads the call context

    async def main() -> tuple[list[pb.RecommendResponse], list[pb.RecommendResponse], BatchedEcho]:
        plain, batched = Echo(), BatchedEcho()
        batched.batcher.start()
        try:
            want = [await plain.Recommend(r, context) for r in requests]
            got = await asyncio.wait_for(asyncio.gather(*(batched.Recommend(r, context) for r in requests)), 60)
        finally:
            await batched.batcher.stop()
        return want, list(got), batched

    want, got, batched = asyncio.run(main())
    assert got == want
    stats = batched.batcher.stats
    assert stats.requests_served == len(requests)
    assert stats.rows_served == sum(len(r.user_ids) for r in requests)
    assert stats.batches_run < len(requests)  # concurrent callers shared model steps
