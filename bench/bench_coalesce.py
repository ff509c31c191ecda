"""The async SDK's call coalescing (`AsyncClient(coalesce_ms=...)`): one process making many concurrent
single-user `recommend` calls, with coalescing off and on, against `movierec serve` (one worker).

64 closed-loop callers on one AsyncClient (one connection) for `--seconds`; each configuration runs
`--repeats` times, interleaved, on one server; medians with [min..max]. Reported: calls/s (each call one
user), latency p50 / p99 as the caller sees it (the window included), and the RPCs the server received per
call (from the coalescer's count).

    python -m bench.bench_coalesce [--artifact A] [--repeats 3] [--seconds 3] [--json out.json]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_online import default_artifact, summary
from bench.common import capacity_args, movierec_serve, start_server, stop, write_json
from movierec.client import AsyncClient, Client

CALLERS = 64
WINDOWS_MS: tuple[float | None, ...] = (None, 0.5, 1.0, 2.0)  # None: off (the default)


async def closed_loop(target: str, users: np.ndarray, window_ms: float | None, seconds: float) -> dict[str, float]:
    async with AsyncClient(target, timeout=30, coalesce_ms=window_ms) as ac:
        await asyncio.gather(*(ac.recommend(int(u), k=10) for u in users[:CALLERS]))  # warm-up
        rpcs0 = ac._coalescer.rpcs if ac._coalescer is not None else 0
        stop_at = time.perf_counter() + seconds
        lat: list[float] = []

        async def caller(w: int) -> int:
            n = 0
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                await ac.recommend(int(users[(w * 7919 + n) % users.size]), k=10)
                lat.append(time.perf_counter() - t)
                n += 1
            return n

        t0 = time.perf_counter()
        calls = sum(await asyncio.gather(*(caller(w) for w in range(CALLERS))))
        out = summary(np.array(lat), calls, time.perf_counter() - t0)
        rpcs = (ac._coalescer.rpcs - rpcs0) if ac._coalescer is not None else calls
        out["rpcs_per_call"] = rpcs / max(calls, 1)
        return out


def _name(window_ms: float | None) -> str:
    return "off" if window_ms is None else f"{window_ms:g} ms"


def run(artifact: Path | None, repeats: int, seconds: float) -> dict[str, Any]:
    artifact = artifact or default_artifact()
    users = np.load(artifact / "users.npy")
    proc, port = start_server(movierec_serve(artifact, "cpu"))
    raw: dict[str, list[dict[str, float]]] = {}
    try:
        target = f"127.0.0.1:{port}"
        with Client(target) as c:
            c.wait_until_serving(60)
        for r in range(repeats):
            for w in WINDOWS_MS:
                res = asyncio.run(closed_loop(target, users, w, seconds))
                raw.setdefault(_name(w), []).append(res)
                print(f"coalesce run {r + 1}/{repeats} {_name(w):7s} {res['calls_per_s']:7.0f} calls/s  p50 "
                      f"{res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  RPCs/call {res['rpcs_per_call']:.3f}",
                      flush=True)  # fmt: skip
    finally:
        stop(proc)

    def med(name: str, key: str) -> dict[str, float]:
        xs = [x[key] for x in raw[name]]
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}

    keys = ("calls_per_s", "p50_ms", "p99_ms", "rpcs_per_call")
    summary_ = {name: {k: med(name, k) for k in keys} for name in raw}
    off = summary_["off"]["calls_per_s"]["median"]
    ratios = {name: s["calls_per_s"]["median"] / off for name, s in summary_.items() if name != "off"}
    print("coalescing on / off, calls/s (medians):", json.dumps(ratios), flush=True)
    return {"artifact": str(artifact), "callers": CALLERS, "repeats": repeats, "seconds": seconds,
            "summary": summary_, "ratios_on_over_off": ratios, "runs": raw}  # fmt: skip


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"**SDK call coalescing** (`python -m bench.bench_coalesce`: {res['callers']} closed-loop callers of "
        f"`recommend`, one user each, on one `AsyncClient` against `movierec serve` with one worker; medians of "
        f"{res['repeats']} runs, [min..max]):",
        "",
        "| coalesce_ms | calls/s | p50 ms | p99 ms | RPCs per call |",
        "|---|---|---|---|---|",
    ]
    for name, s in res["summary"].items():
        c, p50, p99, rpc = (s[k] for k in ("calls_per_s", "p50_ms", "p99_ms", "rpcs_per_call"))
        lines.append(f"| {name} | {c['median']:,.0f} [{c['min']:,.0f}..{c['max']:,.0f}] | {p50['median']:.2f} | "
                     f"{p99['median']:.2f} | {rpc['median']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    a = capacity_args(__doc__, 3.0, "bench/results/coalesce.json").parse_args()
    res = run(a.artifact, a.repeats, a.seconds)
    print(markdown(res))
    write_json(a.json, res)


if __name__ == "__main__":
    main()
