"""Online serving benchmark: `Recommend` latency at concurrency 1 and throughput at concurrency 32.

Starts `movierec serve` as a subprocess on a free port (CPU unless --device), waits for SERVING, then measures
through the SDK:
  - p50/p99 latency of Recommend for one user (k=10), one call at a time (sync Client);
  - calls/s of Recommend for one user per call with 32 calls in flight (AsyncClient).

    python bench/bench_online.py --artifact artifacts/ml-100k-u1
    python bench/bench_online.py            # no artifact: trains an ml-100k-shaped synthetic one first
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from movierec.client import AsyncClient, Client


def synthetic_artifact(out: Path) -> Path:
    """943 users x 1682 movies, ~80k ratings (ml-100k's shape), 2 epochs: seconds on a CPU."""
    from movierec.trainer.config import get_preset
    from movierec.trainer.pipeline import run_training
    from movierec.trainer.synthetic import synthetic_catalog, synthetic_ratings

    df = synthetic_ratings(n_users=943, n_items=1682, n_ratings=80_000, seed=1)
    run_training(
        df, None, synthetic_catalog(1682, seed=1), get_preset("classic"), out,
        overrides={"train": {"epochs": 2, "device": "cpu"}}, dataset="synthetic-ml-100k-shape", progress=False,
    )  # fmt: skip
    return out


def start(artifact: Path, device: str, extra: list[str]) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(artifact), "--host", "127.0.0.1",
           "--port", "0", "--device", device, *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        print("  server:", line.rstrip(), file=sys.stderr)
        m = re.search(r"serving on \S+:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    raise SystemExit(f"server exited with status {proc.wait()}")


def latency_c1(target: str, users: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(n)
    with Client(target, timeout=10) as c:
        for u in users[:50]:
            c.recommend(int(u), k=10)  # warm-up
        for i in range(n):
            t0 = time.perf_counter()
            c.recommend(int(users[i % users.size]), k=10)
            out[i] = time.perf_counter() - t0
    return out


async def throughput(target: str, users: np.ndarray, concurrency: int, seconds: float) -> tuple[int, float, np.ndarray]:
    async with AsyncClient(target, timeout=30) as ac:
        await ac.recommend(int(users[0]), k=10)
        stop_at = time.perf_counter() + seconds
        lat: list[float] = []

        async def worker(w: int) -> int:
            n = 0
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await ac.recommend(int(users[(w * 7919 + n) % users.size]), k=10)
                lat.append(time.perf_counter() - t0)
                n += 1
            return n

        t0 = time.perf_counter()
        counts = await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return sum(counts), time.perf_counter() - t0, np.array(lat)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("--calls", type=int, default=1000, help="calls for the concurrency-1 latency (default 1000)")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of the concurrency-32 run")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("server_args", nargs="*", help="extra `movierec serve` flags after --")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact or synthetic_artifact(Path(tmp) / "artifact")
        proc, port = start(artifact, args.device, args.server_args)
        target = f"127.0.0.1:{port}"
        try:
            with Client(target) as c:
                c.wait_until_serving(60)
                info = c.model_info()
            users = np.random.default_rng(0).permutation(np.arange(1, info.n_users + 1))
            print(f"model {info.version} ({info.dataset}: {info.n_users} users x {info.n_items} movies) on {info.device}")
            lat = latency_c1(target, users, args.calls) * 1e3
            print(f"Recommend, 1 user, k=10, concurrency 1: p50 {np.percentile(lat, 50):.2f} ms, "
                  f"p99 {np.percentile(lat, 99):.2f} ms ({args.calls} calls)")  # fmt: skip
            n, dt, lat32 = asyncio.run(throughput(target, users, args.concurrency, args.seconds))
            lat32 *= 1e3
            print(f"Recommend, 1 user, k=10, concurrency {args.concurrency}: {n / dt:.0f} calls/s "
                  f"(p50 {np.percentile(lat32, 50):.2f} ms, p99 {np.percentile(lat32, 99):.2f} ms, {n} calls in {dt:.1f} s)")  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=30)
                for line in err.splitlines():
                    print("  server:", line, file=sys.stderr)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
