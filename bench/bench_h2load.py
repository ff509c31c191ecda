"""Server capacity with a load generator written in C: h2load (nghttp2) sends unary gRPC Recommend calls.

The Python load generator of `bench.bench_workers` spends 145-189 us of CPU per call (against the echo server
at concurrency 64, three runs), on the same two cores as the servers: with it the echo server gains only
~1.1-1.4x from a second process, so what it measures at concurrency 64 is much of the generator. h2load spends
24-31 us per call in the same test, so more of the cores go to the servers.

Each call is the same gRPC message (Recommend, k=10, the known user with the median number of ratings; h2load
sends one body), framed by hand
(1-byte flag, 4-byte length) and POSTed with `content-type: application/grpc`. h2load counts HTTP 200s, and
gRPC answers errors with HTTP 200 too, so every run also checks the answers' bytes: an error answer carries
no message, so the mean data per answer must be at least what the echo server's full list takes.
`movierec serve` (1 and 2 workers, metrics off and on), the echo server (1 and 2 processes; 1 process on uvloop
too) and the echo server behind movierec's batcher (`ref_servers echo-batched`, on uvloop as `movierec serve`)
run interleaved, `--repeats` times; medians with [min..max]. The batched echo splits the gap between echo and
movierec: echo -> batched echo is what batching (a model step in a thread per batch) costs on its own,
batched echo -> movierec is movierec's own work per call (validation, the model step, the reply).

    apt-get install nghttp2-client     # Debian: h2load
    python -m bench.bench_h2load [--seconds 5] [--repeats 3]
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_online import default_artifact
from bench.bench_workers import configs
from bench.common import capacity_args, start_server, stop, write_json
from movierec.client import Client
from movierec.v1 import recommender_service_pb2 as pb

PATH = "/movierec.v1.RecommenderService/Recommend"
# (connections, streams per connection): 64 calls in flight, one per connection, so that `--workers 2` gets
# shares of connections from the kernel's SO_REUSEPORT hash close to even (16 connections split 11 / 5 often
# enough to halve a run); and one call at a time
LEVELS: dict[str, tuple[int, int]] = {"64": (64, 1), "1": (1, 1)}
MIN_ANSWER_BYTES = 40  # a Recommend answer with 10 movies and scores; an error answer has no message at all


def available() -> str | None:
    return shutil.which("h2load")


def grpc_body(user_id: int, k: int = 10) -> bytes:
    """One gRPC message on the wire: flag 0 (not compressed), big-endian length, the serialized request."""
    msg = pb.RecommendRequest(user_ids=[user_id], k=k).SerializeToString()
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def parse(out: str) -> dict[str, float]:
    """h2load's summary: calls/s, answered and failed calls, data bytes, mean latency (ms)."""
    rate = re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", out)
    req = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    data = re.search(r"traffic: .*? total, .*? headers .*?, ([0-9.]+)([KMG]?)B \((\d+)\) data", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not (rate and req and data):
        raise ValueError(f"cannot read h2load's output:\n{out[-2000:]}")
    ok = int(req.group(2))
    return {
        "calls_per_s": float(rate.group(1)),
        "succeeded": ok,
        "failed": int(req.group(3)) + int(req.group(4)),
        "data_bytes_per_answer": int(data.group(3)) / max(ok, 1),
        "mean_ms": _ms(lat.group(3)) if lat else float("nan"),
    }


def _ms(text: str) -> float:
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    return float(m.group(1)) * scale[m.group(2)] if m else float("nan")


def h2load(port: int, body: Path, level: str, seconds: float) -> dict[str, float]:
    connections, streams = LEVELS[level]
    cmd = ["h2load", "-D", str(max(1, round(seconds))), "-c", str(connections), "-m", str(streams), "-t", "1",
           "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body),
           f"http://127.0.0.1:{port}{PATH}"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if res.returncode != 0:
        raise SystemExit(f"h2load failed ({res.returncode}): {res.stderr.strip() or res.stdout[-500:]}")
    out = parse(res.stdout)
    if out["failed"] or out["data_bytes_per_answer"] < MIN_ANSWER_BYTES:
        raise SystemExit(f"h2load: {out['failed']} failed calls, {out['data_bytes_per_answer']:.0f} bytes per answer "
                         f"(an error answer has none): the server did not answer Recommend")  # fmt: skip
    return out


def typical_user(artifact: Path) -> int:
    """The known user with the median number of ratings: every call asks for the same user, and how much
    scoring costs depends on the user's history (a heavy rater's row is scored densely)."""
    users = np.load(artifact / "users.npy")
    lengths = np.diff(np.load(artifact / "history.npz")["indptr"])
    return int(users[np.argsort(lengths, kind="stable")[lengths.size // 2]])


def one_run(cmd: list[str], body: Path, seconds: float) -> dict[str, Any]:
    movierec = "movierec.cli" in cmd
    pattern = r"all \d+ workers serving on \S+:(\d+)" if "--workers" in cmd and movierec else r"serving on \S+:(\d+)"
    proc, port = start_server(cmd, pattern)
    try:
        if movierec:
            with Client(f"127.0.0.1:{port}") as c:
                c.wait_until_serving(60)
        h2load(port, body, "64", 1)  # warm-up: connections, the batcher's step sizes
        return {level: h2load(port, body, level, seconds) for level in LEVELS}
    finally:
        stop(proc)


def _med(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def run(artifact: Path | None, repeats: int, seconds: float) -> dict[str, Any]:
    artifact = artifact or default_artifact()
    user = typical_user(artifact)
    raw: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "recommend.grpc"
        body.write_bytes(grpc_body(user))
        echo = configs(artifact)["echo-1w"]
        servers = {
            **configs(artifact),
            "echo-1w-uvloop": [*echo, "--event-loop", "uvloop"],
            # echo behind movierec's batcher, on movierec's loop: what the batching structure costs alone
            "echo-batched-1w-uvloop": [sys.executable, "-m", "bench.ref_servers", "echo-batched", "--event-loop", "uvloop"],
        }
        for r in range(repeats):
            for name, cmd in servers.items():
                res = one_run(cmd, body, seconds)
                raw.setdefault(name, []).append(res)
                print(f"h2load run {r + 1}/{repeats} {name:20s} " + "  ".join(
                    f"c={lv}: {res[lv]['calls_per_s']:7.0f}/s (mean {res[lv]['mean_ms']:.2f} ms)" for lv in LEVELS
                ), flush=True)  # fmt: skip
    summary = {name: {lv: {"calls_per_s": _med([x[lv]["calls_per_s"] for x in runs]),
                           "mean_ms": _med([x[lv]["mean_ms"] for x in runs])} for lv in LEVELS}
               for name, runs in raw.items()}  # fmt: skip
    c64 = {n: s["64"]["calls_per_s"]["median"] for n, s in summary.items()}
    ratios = {
        "2w_over_1w_c64": c64["movierec-2w"] / c64["movierec-1w"],
        "1w_over_echo1w_c64": c64["movierec-1w"] / c64["echo-1w"],
        "1w_over_echo1w_uvloop_c64": c64["movierec-1w"] / c64["echo-1w-uvloop"],
        "1w_over_echo_batched_uvloop_c64": c64["movierec-1w"] / c64["echo-batched-1w-uvloop"],
        "echo_batched_over_echo1w_uvloop_c64": c64["echo-batched-1w-uvloop"] / c64["echo-1w-uvloop"],
        "2w_over_echo2w_c64": c64["movierec-2w"] / c64["echo-2w"],
        "echo2w_over_echo1w_c64": c64["echo-2w"] / c64["echo-1w"],
        "metrics_cost_1w_c64": 1 - c64["movierec-1w-metrics"] / c64["movierec-1w"],
        "metrics_cost_2w_c64": 1 - c64["movierec-2w-metrics"] / c64["movierec-2w"],
    }
    print("h2load medians over", repeats, "runs:", json.dumps(ratios, indent=1), flush=True)
    return {"artifact": str(artifact), "user": user, "repeats": repeats, "seconds": seconds, "levels": LEVELS,
            "summary": summary, "ratios": ratios, "runs": raw}  # fmt: skip


def main() -> None:
    a = capacity_args(__doc__, 5.0, "bench/results/h2load.json").parse_args()
    if not available():
        raise SystemExit("h2load not found: apt-get install nghttp2-client (Debian), or brew install nghttp2")
    write_json(a.json, run(a.artifact, a.repeats, a.seconds))


if __name__ == "__main__":
    main()
