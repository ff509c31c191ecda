"""Online serving: Recommend for one user per call at concurrency 1, 8, 64 (p50/p99 latency, calls/s).

Three servers, started by this benchmark in the same run, measured by the same SDK client:
  movierec   `movierec serve` (dynamic batching in a model thread)
  naive      same model and .proto, one forward pass per request in the handler (bench/ref_servers.py)
  echo       grpc.aio answering canned lists of the same size: the ceiling of Python gRPC here

Concurrency 1 uses the blocking Client (one call at a time); 8 and 64 use AsyncClient with that many calls in
flight for `--seconds`.

    python -m bench.bench_online                              # ml-100k artifact (or a synthetic one of its shape)
    python -m bench.bench_online --artifact artifacts/ml-100k-u1 --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import movierec_serve, start_server, stop
from movierec.client import AsyncClient, Client

CONCURRENCY = (1, 8, 64)


def default_artifact() -> Path:
    for p in (Path("artifacts/ml-100k-u1"), Path("bench/results/classic-u1-artifact")):
        if (p / "manifest.json").exists():
            return p
    from bench.synthetic_data import build_artifact

    return build_artifact(Path("bench/results/synthetic-ml-100k-seed0"), "ml-100k")


def summary(lat_s: np.ndarray, n: int, dt: float) -> dict[str, float]:
    ms = lat_s * 1e3
    return {"calls": n, "seconds": dt, "calls_per_s": n / dt,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}  # fmt: skip


def concurrency_1(target: str, users: np.ndarray, n: int) -> dict[str, float]:
    lat = np.empty(n)
    with Client(target, timeout=10) as c:
        for u in users[:100]:
            c.recommend(int(u), k=10)  # warm-up
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            c.recommend(int(users[i % users.size]), k=10)
            lat[i] = time.perf_counter() - t
        return summary(lat, n, time.perf_counter() - t0)


async def closed_loop(
    clients: list[AsyncClient], users: np.ndarray, concurrency: int, seconds: float
) -> dict[str, float]:
    """`concurrency` closed-loop callers of Recommend for `seconds`. With several clients (connections), each
    call goes to the one with the fewest calls in flight (least outstanding requests): the kernel spreads
    connections over `--workers` by a hash, so 8 connections often land 5 / 3 or 6 / 2, and callers pinned to
    connections would load the workers as unevenly; this way a worker gets the calls it keeps up with."""
    stop_at = time.perf_counter() + seconds
    lat: list[float] = []
    inflight = [0] * len(clients)

    async def worker(w: int) -> int:
        n = 0
        while time.perf_counter() < stop_at:
            i = inflight.index(min(inflight)) if len(clients) > 1 else 0
            inflight[i] += 1
            t = time.perf_counter()
            try:
                await clients[i].recommend(int(users[(w * 7919 + n) % users.size]), k=10)
            finally:
                inflight[i] -= 1
            lat.append(time.perf_counter() - t)
            n += 1
        return n

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return summary(np.array(lat), sum(counts), time.perf_counter() - t0)


async def concurrent(target: str, users: np.ndarray, concurrency: int, seconds: float) -> dict[str, float]:
    async with AsyncClient(target, timeout=30) as ac:
        await asyncio.gather(*(ac.recommend(int(u), k=10) for u in users[:concurrency]))  # warm-up
        return await closed_loop([ac], users, concurrency, seconds)


def measure(name: str, target: str, users: np.ndarray, calls: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"1": concurrency_1(target, users, calls)}
    for c in CONCURRENCY[1:]:
        out[str(c)] = asyncio.run(concurrent(target, users, c, seconds))
    for c, r in out.items():
        print(f"  {name:9s} c={c:>2}: {r['calls_per_s']:7.0f} calls/s  p50 {r['p50_ms']:6.2f} ms  "
              f"p99 {r['p99_ms']:6.2f} ms", flush=True)  # fmt: skip
    return out


def torch_threads(server_args: list[str]) -> int:
    """The `--torch-threads` given to `movierec serve` (its default, 1, if none): the naive server uses it too."""
    value = "1"
    for i, a in enumerate(server_args):
        if a == "--torch-threads" and i + 1 < len(server_args):
            value = server_args[i + 1]
        elif a.startswith("--torch-threads="):
            value = a.split("=", 1)[1]
    return int(value)


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per concurrency: the median of each figure over the runs, with calls/s min and max."""
    import statistics

    out: dict[str, Any] = {}
    for c in runs[0]:
        vals = [r[c] for r in runs]
        out[c] = {key: statistics.median(v[key] for v in vals) for key in ("calls_per_s", "p50_ms", "p99_ms")}
        out[c]["calls_per_s_min"] = min(v["calls_per_s"] for v in vals)
        out[c]["calls_per_s_max"] = max(v["calls_per_s"] for v in vals)
        out[c]["p99_ms_min"] = min(v["p99_ms"] for v in vals)
        out[c]["p99_ms_max"] = max(v["p99_ms"] for v in vals)
        out[c]["runs"] = len(vals)
    return out


def run(
    artifact: Path | None, device: str, calls: int, seconds: float, server_args: list[str], repeats: int = 1
) -> dict[str, Any]:
    """Each server measured `repeats` times, interleaved (movierec, naive, echo, movierec, ...); medians."""
    artifact = artifact or default_artifact()
    manifest = json.loads((artifact / "manifest.json").read_text())
    users = np.random.default_rng(0).permutation(np.load(artifact / "users.npy"))
    print(f"online: {manifest.get('dataset')} ({manifest['n_users']} users x {manifest['n_items']} movies), "
          f"device {device}, Recommend 1 user k=10", flush=True)  # fmt: skip
    servers = {
        "movierec": movierec_serve(artifact, device, *server_args),
        "naive": [
            sys.executable,
            "-m",
            "bench.ref_servers",
            "naive",
            "--artifact",
            str(artifact),
            "--device",
            device,
            "--torch-threads",
            str(torch_threads(server_args)),
        ],
        "echo": [sys.executable, "-m", "bench.ref_servers", "echo"],
    }
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for _ in range(repeats):
        for name, cmd in servers.items():
            proc, port = start_server(cmd)
            try:
                target = f"127.0.0.1:{port}"
                with Client(target) as c:
                    if name == "movierec":
                        c.wait_until_serving(60)
                raw[name].append(measure(name, target, users, calls, seconds))
            finally:
                stop(proc)
    results = {name: _median_of(runs) for name, runs in raw.items()}
    top = str(CONCURRENCY[-1])
    ratios = {
        "c64_vs_naive": results["movierec"][top]["calls_per_s"] / results["naive"][top]["calls_per_s"],
        "c64_vs_echo": results["movierec"][top]["calls_per_s"] / results["echo"][top]["calls_per_s"],
        "c1_p99_ms": results["movierec"]["1"]["p99_ms"],
    }
    print(f"  ratios: c64 {ratios['c64_vs_naive']:.2f}x naive (floor 5x), {ratios['c64_vs_echo']:.2f}x echo "
          f"(floor 0.5x); p99 at c=1 {ratios['c1_p99_ms']:.2f} ms (floor <= 5 ms)", flush=True)  # fmt: skip
    return {"dataset": manifest.get("dataset"), "artifact": str(artifact), "n_users": manifest["n_users"],
            "n_items": manifest["n_items"], "device": device, "results": results, "ratios": ratios,
            "repeats": repeats, "runs": raw}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("--calls", type=int, default=1000, help="calls at concurrency 1 (default 1000)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration at concurrency 8 and 64 (default 5)")
    p.add_argument("--quick", action="store_true", help="300 calls, 2 s per concurrency")
    p.add_argument("--json", type=Path)
    p.add_argument("server_args", nargs="*", help="extra `movierec serve` flags after --")
    a = p.parse_args()
    calls, seconds = (300, 2.0) if a.quick else (a.calls, a.seconds)
    res = run(a.artifact, a.device, calls, seconds, a.server_args)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
