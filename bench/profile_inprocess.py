"""movierec's own per-call work without gRPC: the servicer's Recommend (parse, validate, batcher, reply,
serialize) driven in-process by closed-loop callers, with a fake call context.

Reports calls/s and CPU microseconds per call: the whole process (event loop + model thread) and the event
loop thread alone. What gRPC itself costs per call is what the echo server shows (bench.profile_server).

    python -m bench.profile_inprocess                       # c=64 and c=8 on the synthetic ml-100k shape
    python -m bench.profile_inprocess --concurrency 1 --calls 5000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_online import default_artifact


class _Context:
    def time_remaining(self) -> float:
        return 30.0


async def measure(scorer: Any, artifact: Path, concurrency: int, calls: int) -> dict[str, float]:
    from movierec.server.config import ServerSettings
    from movierec.server.engine import Engine
    from movierec.server.servicer import RecommenderServicer
    from movierec.v1 import recommender_service_pb2 as pb

    engine = Engine(scorer, ServerSettings(artifact=artifact))
    engine.batcher.start()
    servicer = RecommenderServicer(engine)
    users = np.load(artifact / "users.npy")
    requests = [pb.RecommendRequest(user_ids=[int(u)], k=10).SerializeToString() for u in users[:500]]
    ctx = _Context()
    left = [0]

    async def caller(w: int) -> None:
        i = w
        while left[0] > 0:
            left[0] -= 1
            req = pb.RecommendRequest.FromString(requests[i % len(requests)])
            (await servicer.Recommend(req, ctx)).SerializeToString()  # type: ignore[arg-type]
            i += 1

    left[0] = min(calls, 2000)
    await asyncio.gather(*(caller(w) for w in range(concurrency)))  # warm-up
    st = engine.batcher.stats
    served0, steps0 = st.requests_served, st.batches_run
    left[0] = calls
    t0, c0, l0 = time.perf_counter(), time.process_time(), time.thread_time()
    await asyncio.gather(*(caller(w) for w in range(concurrency)))
    dt, cpu, loop_cpu = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - l0
    await engine.batcher.stop()
    return {
        "concurrency": concurrency, "calls_per_s": calls / dt, "cpu_us_per_call": 1e6 * cpu / calls,
        "loop_cpu_us_per_call": 1e6 * loop_cpu / calls,
        "jobs_per_step": (st.requests_served - served0) / max(st.batches_run - steps0, 1),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path)
    p.add_argument("--concurrency", type=int, nargs="*", default=[64, 8])
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    from movierec.core.device import configure_threads
    from movierec.core.scoring import Scorer

    artifact = a.artifact or default_artifact()
    configure_threads(1)  # as `movierec serve`
    scorer = Scorer.load(artifact, device="cpu")
    scorer.warmup()
    for c in a.concurrency:
        runs = [asyncio.run(measure(scorer, artifact, c, a.calls)) for _ in range(a.repeats)]
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        print(f"c={c}: {med['calls_per_s']:,.0f} calls/s, process CPU {med['cpu_us_per_call']:.1f} us/call, event "
              f"loop {med['loop_cpu_us_per_call']:.1f} us/call, {med['jobs_per_step']:.1f} jobs per model step "
              f"(medians of {a.repeats})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
