"""Server CPU per call: what `movierec serve` spends per unary Recommend beside the grpc.aio echo server.

Each server is started, warmed up, then loaded by closed-loop callers (Recommend, 1 user, k=10) spread over
several connections for `--seconds`; the server's CPU time over that window (every thread, from
/proc/<pid>/task) divided by the calls answered is its CPU per call. The event loop thread (the main thread)
is reported apart from the rest (the model thread, gRPC's completion-queue threads). With `--py-spy` the
server is sampled during the window and the hottest frames (self time and inclusive) are printed, so the cost
can be traced to a function. Servers are measured `--repeats` times, interleaved; medians with min..max.

    python -m bench.profile_server                          # movierec vs echo at concurrency 64
    python -m bench.profile_server --py-spy --repeats 1     # plus where movierec's CPU goes
    python -m bench.profile_server --metrics                # plus movierec with metrics on: their CPU cost
    python -m bench.profile_server -- --workers 1           # extra `movierec serve` flags after --
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_online import closed_loop, default_artifact
from bench.common import movierec_serve, start_server, stop
from movierec.client import AsyncClient, Client

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of a process, by thread id."""
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return out


def thread_names(pid: int) -> dict[int, str]:
    out: dict[int, str] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
    return out


async def load(target: str, users: np.ndarray, concurrency: int, connections: int, seconds: float) -> dict[str, Any]:
    opts = [("grpc.use_local_subchannel_pool", 1)]
    clients = [AsyncClient(target, timeout=30, options=opts) for _ in range(connections)]
    try:
        for _ in range(3):  # warm-up
            await asyncio.gather(*(c.recommend(int(users[i]), k=10) for i, c in enumerate(clients)))
        return await closed_loop(clients, users, concurrency, seconds)
    finally:
        for c in clients:
            await c.close()


def py_spy_summary(raw: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks: the frames with the most self and inclusive samples (share of all)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    total = max(total, 1)
    return {
        "self": [(f, n / total) for f, n in own.most_common(top)],
        "inclusive": [(f, n / total) for f, n in incl.most_common(top)],
    }


def measure(cmd: list[str], users: np.ndarray, concurrency: int, connections: int, seconds: float,
            spy: Path | None) -> dict[str, Any]:  # fmt: skip
    log: list[str] = []
    proc, port = start_server(cmd, log=log)
    try:
        target = f"127.0.0.1:{port}"
        with Client(target) as c:
            if "movierec.cli" in cmd:
                c.wait_until_serving(60)
        asyncio.run(load(target, users, concurrency, connections, 1.0))  # warm the server
        spy_proc = None
        if spy is not None:
            spy_proc = subprocess.Popen(
                [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(proc.pid), "-d", str(int(seconds) + 1),
                 "-r", "250", "--format", "raw", "-o", str(spy), "--threads", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
        before = thread_cpu(proc.pid)
        res = asyncio.run(load(target, users, concurrency, connections, seconds))
        after = thread_cpu(proc.pid)
        names = thread_names(proc.pid)
        if spy_proc is not None:
            spy_proc.wait(60)
    finally:
        stop(proc)
        time.sleep(0.2)
    batches = [ln.strip() for ln in log if "requests in" in ln and "batches" in ln]
    calls = res["calls"]
    total = sum(after.values()) - sum(before.get(t, 0.0) for t in after)
    per_thread = {f"{names.get(t, '?')}[{t}]": round(1e6 * (c - before.get(t, 0.0)) / res["calls"], 1)
                  for t, c in after.items() if c - before.get(t, 0.0) > 0}  # fmt: skip
    main = after.get(proc.pid, 0.0) - before.get(proc.pid, 0.0)
    return {
        "calls_per_s": res["calls_per_s"], "p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"], "calls": calls,
        "cpu_us_per_call": 1e6 * total / calls, "loop_cpu_us_per_call": 1e6 * main / calls,
        "other_cpu_us_per_call": 1e6 * (total - main) / calls, "batches": batches[-1:], "threads_us_per_call": per_thread,
    }  # fmt: skip


def med(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--py-spy", action="store_true", help="sample movierec with py-spy during its windows")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--metrics", action="store_true", help="also movierec with --metrics-port 0 (metrics cost)")
    p.add_argument("--json", type=Path)
    p.add_argument("server_args", nargs="*", help="extra `movierec serve` flags after --")
    a = p.parse_args()
    artifact = a.artifact or default_artifact()
    users = np.random.default_rng(0).permutation(np.load(artifact / "users.npy"))
    servers = {
        "movierec": movierec_serve(artifact, "cpu", *a.server_args),
        "echo": [sys.executable, "-m", "bench.ref_servers", "echo"],
    }
    if a.metrics:  # the same server with Prometheus metrics on: their cost as server CPU per call
        servers["movierec-metrics"] = movierec_serve(artifact, "cpu", *a.server_args, "--metrics-port", "0")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in servers}
    spy_dir = Path(tempfile.mkdtemp(prefix="movierec-spy-"))
    for r in range(a.repeats):
        for name, cmd in servers.items():
            spy = spy_dir / f"{name}-{r}.txt" if a.py_spy and name == "movierec" else None
            res = measure(cmd, users, a.concurrency, a.connections, a.seconds, spy)
            runs[name].append(res)
            print(f"run {r + 1}/{a.repeats} {name:8s} {res['calls_per_s']:6.0f} calls/s  server CPU "
                  f"{res['cpu_us_per_call']:5.0f} us/call (event loop {res['loop_cpu_us_per_call']:4.0f}, other "
                  f"threads {res['other_cpu_us_per_call']:4.0f})  p50 {res['p50_ms']:.1f} ms", flush=True)  # fmt: skip
            print("    threads (us/call):", res["threads_us_per_call"])
            for line in res["batches"]:
                print("   ", line.split("stopped: ", 1)[-1])
    keys = ("calls_per_s", "cpu_us_per_call", "loop_cpu_us_per_call", "other_cpu_us_per_call", "p99_ms")
    summary = {n: {k: med([x[k] for x in rs]) for k in keys} for n, rs in runs.items()}
    m, e = summary["movierec"], summary["echo"]
    print(f"medians of {a.repeats}: movierec {m['cpu_us_per_call']['median']:.0f} us/call vs echo "
          f"{e['cpu_us_per_call']['median']:.0f} (movierec adds {m['cpu_us_per_call']['median'] - e['cpu_us_per_call']['median']:.0f} us); "
          f"calls/s {m['calls_per_s']['median']:.0f} vs {e['calls_per_s']['median']:.0f} = "
          f"{m['calls_per_s']['median'] / e['calls_per_s']['median']:.2f}x")  # fmt: skip
    out: dict[str, Any] = {"concurrency": a.concurrency, "connections": a.connections, "seconds": a.seconds,
                           "server_args": a.server_args, "summary": summary, "runs": runs}  # fmt: skip
    if a.metrics:
        on = summary["movierec-metrics"]
        cost = on["cpu_us_per_call"]["median"] / m["cpu_us_per_call"]["median"] - 1
        print(f"metrics on: {on['cpu_us_per_call']['median']:.0f} us/call vs off {m['cpu_us_per_call']['median']:.0f}: "
              f"{100 * cost:+.1f}% server CPU per call; calls/s {on['calls_per_s']['median']:.0f} vs "
              f"{m['calls_per_s']['median']:.0f}")  # fmt: skip
        out["metrics_cpu_cost"] = cost
    if a.py_spy:
        merged = spy_dir / "movierec-all.txt"
        merged.write_text("".join(f.read_text() for f in sorted(spy_dir.glob("movierec-*.txt")) if f != merged))
        prof = py_spy_summary(merged, a.top)
        out["py_spy"] = prof
        for kind in ("self", "inclusive"):
            print(f"py-spy, movierec server, top frames by {kind} samples:")
            for f, share in prof[kind]:
                print(f"  {100 * share:5.1f}%  {f}")
        print(f"collapsed stacks: {spy_dir}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
