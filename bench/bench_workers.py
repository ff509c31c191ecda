"""Worker processes and metrics: `movierec serve` with 1 and 2 workers, metrics on and off, against the echo
reference with the same number of processes; Recommend, one user per call, at concurrency 1, 8 and 64; and
users/s through batched Recommend (32 users per call, 8 callers) and through StreamRecommend (one
bidirectional stream per connection, one user per request, up to 64 requests in flight per stream).
Every configuration runs `--repeats` times, interleaved (so drift on a shared machine hits all alike); the
figures are medians with the min..max spread. Also the memory of 1 and 2 workers (RSS and PSS summed over
the process tree: PSS counts a page shared by two processes half in each).

    python -m bench.bench_workers [--artifact A] [--repeats 3] [--seconds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.bench_online import closed_loop, concurrency_1, default_artifact
from bench.common import movierec_serve, start_server, stop
from movierec.client import AsyncClient, Client, RecommendQuery

LEVELS = (1, 8, 64)
# the kernel spreads connections (not calls) over workers, by a hash: every configuration gets up to 16 (and
# closed_loop sends each call on the connection with the fewest in flight)
CONNECTIONS = 16
STREAMS = 8  # StreamRecommend: one stream per connection


async def concurrent(target: str, users: np.ndarray, concurrency: int, seconds: float) -> dict[str, float]:
    """`concurrency` closed-loop callers over min(CONNECTIONS, concurrency) separate connections (one event
    loop; no shared subchannels)."""

    opts = [("grpc.use_local_subchannel_pool", 1)]
    clients = [AsyncClient(target, timeout=30, options=opts) for _ in range(min(CONNECTIONS, concurrency))]
    try:
        await asyncio.gather(*(c.recommend(int(users[i]), k=10) for i, c in enumerate(clients)))  # warm-up
        return await closed_loop(clients, users, concurrency, seconds)
    finally:
        for c in clients:
            await c.close()


def _clients(target: str, n: int) -> list[AsyncClient]:
    return [AsyncClient(target, timeout=60, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(n)]


async def batched(target: str, users: np.ndarray, per_call: int, callers: int, seconds: float) -> dict[str, float]:
    """Users/s through Recommend with `per_call` users per call, `callers` closed-loop callers."""
    clients = _clients(target, CONNECTIONS)
    try:
        await asyncio.gather(*(c.recommend(users[:per_call].tolist(), k=10) for c in clients))  # warm-up
        stop_at = asyncio.get_running_loop().time() + seconds

        inflight = [0] * len(clients)

        async def caller(w: int) -> int:
            n = 0
            while asyncio.get_running_loop().time() < stop_at:
                i = inflight.index(min(inflight))  # the connection with the fewest calls in flight
                inflight[i] += 1
                lo = (w * 7919 + n * per_call) % max(users.size - per_call, 1)
                try:
                    await clients[i].recommend(users[lo : lo + per_call].tolist(), k=10)
                finally:
                    inflight[i] -= 1
                n += 1
            return n

        t0 = time.perf_counter()
        calls = sum(await asyncio.gather(*(caller(w) for w in range(callers))))
        dt = time.perf_counter() - t0
        return {"calls": calls, "users_per_s": calls * per_call / dt, "seconds": dt}
    finally:
        for c in clients:
            await c.close()


async def streamed(target: str, users: np.ndarray, streams: int, seconds: float) -> dict[str, float]:
    """Users/s through StreamRecommend: `streams` streams (one per connection), one user per request; each
    stream keeps up to 64 requests ahead of its answers (the server's per-stream in-flight limit)."""
    clients = _clients(target, streams)
    try:
        await asyncio.gather(*(c.recommend(int(users[0]), k=10) for c in clients))  # warm-up
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + seconds

        async def one(w: int) -> int:
            window = asyncio.Semaphore(64)
            got = 0

            async def queries() -> Any:
                n = 0
                while loop.time() < stop_at:
                    await window.acquire()
                    yield RecommendQuery(user_ids=[int(users[(w * 7919 + n) % users.size])], k=10)
                    n += 1

            async for _ in clients[w].stream(queries()):
                got += 1
                window.release()
            return got

        t0 = time.perf_counter()
        got = sum(await asyncio.gather(*(one(w) for w in range(streams))))
        dt = time.perf_counter() - t0
        return {"users": got, "users_per_s": got / dt, "seconds": dt}
    finally:
        for c in clients:
            await c.close()


def configs(artifact: Path) -> dict[str, list[str]]:
    echo = [sys.executable, "-m", "bench.ref_servers", "echo"]
    return {
        "movierec-1w": movierec_serve(artifact, "cpu"),
        "movierec-1w-metrics": movierec_serve(artifact, "cpu", "--metrics-port", "0"),
        "movierec-2w": movierec_serve(artifact, "cpu", "--workers", "2"),
        "movierec-2w-metrics": movierec_serve(artifact, "cpu", "--workers", "2", "--metrics-port", "0"),
        "echo-1w": echo,
        "echo-2w": [*echo, "--workers", "2"],
    }


def memory(pid: int) -> dict[str, float]:
    """RSS and PSS (MiB) of a process and its children, summed."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    rss = pss = 0
    for p in procs:
        info = p.memory_full_info()
        rss += info.rss
        pss += info.pss
    return {"processes": len(procs), "rss_mib": rss / 2**20, "pss_mib": pss / 2**20}


def one_run(cmd: list[str], users: np.ndarray, calls: int, seconds: float) -> dict[str, Any]:
    pattern = r"all \d+ workers serving on \S+:(\d+)" if "--workers" in cmd and "movierec.cli" in cmd else None
    proc, port = start_server(cmd, pattern) if pattern else start_server(cmd)
    try:
        target = f"127.0.0.1:{port}"
        with Client(target) as c:
            c.wait_until_serving(60) if "movierec.cli" in cmd else None
        out: dict[str, Any] = {"1": concurrency_1(target, users, calls)}
        for level in LEVELS[1:]:
            out[str(level)] = asyncio.run(concurrent(target, users, level, seconds))
        if "movierec.cli" in cmd and "--metrics-port" not in cmd:  # users/s through batches and streams
            out["batched32"] = asyncio.run(batched(target, users, 32, 8, seconds))
            out["stream"] = asyncio.run(streamed(target, users, STREAMS, seconds))
        out["memory"] = memory(proc.pid)
        return out
    finally:
        stop(proc)


def med(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def run(artifact: Path | None, repeats: int, calls: int, seconds: float, only: list[str] | None = None) -> dict[str, Any]:
    artifact = artifact or default_artifact()
    users = np.random.default_rng(0).permutation(np.load(artifact / "users.npy"))
    cfgs = {n: c for n, c in configs(artifact).items() if not only or n in only}
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in cfgs}
    for r in range(repeats):
        for name, cmd in cfgs.items():
            res = one_run(cmd, users, calls, seconds)
            raw[name].append(res)
            extra = "".join(f"  {k} {res[k]['users_per_s']:6.0f} users/s" for k in ("batched32", "stream") if k in res)
            print(f"run {r + 1}/{repeats} {name:20s} " + "  ".join(
                f"c={lv}: {res[str(lv)]['calls_per_s']:6.0f}/s p99 {res[str(lv)]['p99_ms']:5.1f} ms" for lv in LEVELS
            ) + extra + f"  RSS {res['memory']['rss_mib']:.0f} MiB PSS {res['memory']['pss_mib']:.0f} MiB", flush=True)
    summary: dict[str, Any] = {}
    for name, runs in raw.items():
        summary[name] = {str(lv): {"calls_per_s": med([x[str(lv)]["calls_per_s"] for x in runs]),
                                   "p50_ms": med([x[str(lv)]["p50_ms"] for x in runs]),
                                   "p99_ms": med([x[str(lv)]["p99_ms"] for x in runs])} for lv in LEVELS}
        for k in ("batched32", "stream"):
            if all(k in x for x in runs):
                summary[name][k] = {"users_per_s": med([x[k]["users_per_s"] for x in runs])}
        summary[name]["memory"] = {k: med([x["memory"][k] for x in runs]) for k in ("rss_mib", "pss_mib")}
    c64 = {n: summary[n]["64"]["calls_per_s"]["median"] for n in summary}
    if only:  # a subset: no ratios
        return {"artifact": str(artifact), "repeats": repeats, "seconds": seconds, "summary": summary, "runs": raw}
    ratios = {
        "2w_over_1w_c64": c64["movierec-2w"] / c64["movierec-1w"],
        "1w_over_echo1w_c64": c64["movierec-1w"] / c64["echo-1w"],
        "2w_over_echo2w_c64": c64["movierec-2w"] / c64["echo-2w"],
        "metrics_cost_1w_c64": 1 - c64["movierec-1w-metrics"] / c64["movierec-1w"],
        "metrics_cost_2w_c64": 1 - c64["movierec-2w-metrics"] / c64["movierec-2w"],
        "p99_c1_ms_1w": summary["movierec-1w"]["1"]["p99_ms"]["median"],
        "p99_c1_ms_echo1w": summary["echo-1w"]["1"]["p99_ms"]["median"],
    }
    print("medians over", repeats, "runs:", json.dumps(ratios, indent=1))
    return {"artifact": str(artifact), "repeats": repeats, "seconds": seconds, "summary": summary,
            "ratios": ratios, "runs": raw}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", type=Path, default=Path("bench/results/workers.json"))
    p.add_argument("--only", default="", help="comma-separated configurations (default: all; then no ratios)")
    a = p.parse_args()
    res = run(a.artifact, a.repeats, a.calls, a.seconds, [x for x in a.only.split(",") if x] or None)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=2))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
