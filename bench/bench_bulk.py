"""Bulk scoring: in-process Scorer throughput vs end to end (server -> gRPC stream -> SDK -> Parquet on disk).

Same artifact, same users, same chunk size (users per model step) in both. In-process: `Scorer.topk` over the
users' history rows, chunk by chunk, results mapped to raw ids (nothing written). End to end: `movierec serve`
in a subprocess and `movierec score-all` in another, writing Parquet; peak RSS of each from the kernel
(server: VmHWM, and VmRSS before the run to show what bulk scoring adds; client: VmHWM polled).

    python -m bench.bench_bulk                      # 100k x 20k synthetic, all users
    python -m bench.bench_bulk --quick              # 20k users of it
    python -m bench.bench_bulk --shape ml-25m --device cuda
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import movierec_serve, proc_kib, start_server, stop, wait_peak_kib
from bench.synthetic_data import build_artifact


def score_all_seconds(stderr: str, users: int) -> float:
    """score-all's own time (request sent to output closed) from its last line, `... in 4.6s (21557 users/s)`
    (one target, or `... from 16 shards over 4 connections in ...`): users / its users/s, which it prints to
    more digits than the seconds. The floor is read on this clock: never substitute another one silently."""
    found = re.findall(r" in ([0-9.]+)s \(([0-9]+) users/s\)", stderr)
    if not found or int(found[-1][1]) <= 0:
        raise SystemExit(f"score-all did not print its own time ('... in Xs (N users/s)'): {stderr[-500:]}")
    return users / int(found[-1][1])


def in_process(artifact: Path, device: str, n_users: int, chunk: int, k: int) -> dict[str, Any]:
    from movierec.core.scoring import Scorer

    scorer = Scorer.load(artifact, device=device)
    scorer.warmup()
    t0 = time.perf_counter()
    for lo in range(0, n_users, chunk):
        users = np.arange(lo, min(lo + chunk, n_users))
        items, _scores = scorer.recommend_users(users, k)
        np.where(items >= 0, scorer.items.raw[np.maximum(items, 0)], -1)
    dt = time.perf_counter() - t0
    return {"users": n_users, "seconds": dt, "users_per_s": n_users / dt}


def end_to_end(
    artifact: Path, device: str, n_users: int, chunk: int, k: int, total_users: int, workers: int = 1
) -> dict[str, Any]:
    """`workers` > 1: `serve --workers N` (one torch thread each) and `score-all --connections 2N`."""
    # a bulk-dedicated server: torch's default intra-op threads, as the in-process run above uses
    if workers > 1:
        proc, port = start_server(movierec_serve(artifact, device, "--torch-threads", "1", "--workers", str(workers)),
                                  r"all \d+ workers serving on \S+:(\d+)")  # fmt: skip
    else:
        proc, port = start_server(movierec_serve(artifact, device, "--torch-threads", "0"))
    try:
        server_rss_before = proc_kib(proc.pid, "VmRSS")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "recs.parquet"
            cmd = [sys.executable, "-m", "movierec.cli", "score-all", "--target", f"127.0.0.1:{port}", "-k", str(k),
                   "--out", str(out), "--chunk-users", str(chunk), "--no-progress"]  # fmt: skip
            if n_users < total_users:
                cmd += ["--user-range", f"1:{n_users + 1}"]  # synthetic user ids are 1..N
            if workers > 1:
                cmd += ["--connections", str(2 * workers)]
            t0 = time.perf_counter()
            client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            rc, client_peak = wait_peak_kib(client)
            dt = time.perf_counter() - t0
            err = client.stderr.read().decode() if client.stderr else ""
            if rc != 0:
                raise SystemExit(f"score-all failed ({rc}): {err}")
            # score-all's own clock: from sending the request to the Parquet file closed (the pipeline),
            # without the interpreter's start, imports and channel set-up that `dt` also holds
            pipeline_s = score_all_seconds(err, n_users)
            size = out.stat().st_size
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(out).metadata
            rows, groups = meta.num_rows, meta.num_row_groups
        server_peak = proc_kib(proc.pid, "VmHWM")
        server_rss_after = proc_kib(proc.pid, "VmRSS")
    finally:
        stop(proc)
    return {
        "users": n_users, "seconds": dt, "users_per_s": n_users / dt, "rows": rows, "row_groups": groups,
        "pipeline_seconds": pipeline_s, "pipeline_users_per_s": n_users / max(pipeline_s, 1e-9),
        "parquet_bytes": size, "client_peak_rss_mib": client_peak / 1024,
        "server_rss_before_mib": server_rss_before / 1024, "server_peak_rss_mib": server_peak / 1024,
        "server_rss_after_mib": server_rss_after / 1024, "client_stderr": err.strip().splitlines()[-1:],
    }  # fmt: skip


def run(shape: str, device: str, users: int | None, chunk: int, k: int, seed: int = 0, repeats: int = 1,
        workers: int = 1) -> dict[str, Any]:  # fmt: skip
    """In-process and end to end `repeats` times, interleaved; the figures of the run with the median ratio,
    and every run's ratio (`ratio_runs`). `workers` > 1: also end to end with that many server workers."""
    runs = [_run_once(shape, device, users, chunk, k, seed, workers) for _ in range(repeats)]
    ratios = [r["ratio_e2e_over_in_process"] for r in runs]
    pipeline = [r["ratio_pipeline_over_in_process"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["ratio_e2e_over_in_process"])[len(runs) // 2]
    if repeats > 1:
        print(f"  bulk end to end / in-process over {repeats} runs: median {median_run['ratio_e2e_over_in_process']:.2f}x "
              f"({min(ratios):.2f}..{max(ratios):.2f}); score-all's own clock: median {sorted(pipeline)[len(pipeline) // 2]:.2f}x "
              f"({min(pipeline):.2f}..{max(pipeline):.2f})", flush=True)  # fmt: skip
    out = {**median_run, "ratio_runs": ratios, "in_process_runs": [r["in_process"]["users_per_s"] for r in runs],
           "end_to_end_runs": [r["end_to_end"]["users_per_s"] for r in runs], "pipeline_ratio_runs": pipeline,
           "pipeline_runs": [r["end_to_end"]["pipeline_users_per_s"] for r in runs]}  # fmt: skip
    if all("end_to_end_workers" in r for r in runs):
        out["end_to_end_workers_runs"] = [r["end_to_end_workers"]["users_per_s"] for r in runs]
        out["workers"] = workers
    return out


def _run_once(shape: str, device: str, users: int | None, chunk: int, k: int, seed: int = 0,
              workers: int = 1) -> dict[str, Any]:  # fmt: skip
    artifact = build_artifact(Path(f"bench/results/synthetic-{shape}-seed{seed}"), shape, seed=seed)
    manifest = json.loads((artifact / "manifest.json").read_text())
    total = int(manifest["n_users"])
    n = min(users or total, total)
    print(f"bulk: {shape} ({total} users x {manifest['n_items']} movies, {manifest['n_ratings']} ratings), "
          f"{n} users, k={k}, chunk {chunk}, device {device}", flush=True)  # fmt: skip
    ip = in_process(artifact, device, n, chunk, k)
    print(f"  in-process: {ip['users_per_s']:.0f} users/s ({ip['seconds']:.1f}s)", flush=True)
    e2e = end_to_end(artifact, device, n, chunk, k, total)
    ratio = e2e["users_per_s"] / ip["users_per_s"]
    pipeline = e2e["pipeline_users_per_s"] / ip["users_per_s"]
    print(f"  end to end (server -> gRPC -> SDK -> Parquet): {e2e['users_per_s']:.0f} users/s "
          f"({e2e['seconds']:.1f}s with the client's start, {e2e['rows']} rows, {e2e['row_groups']} row groups) = "
          f"{ratio:.2f}x in-process; score-all's own clock {e2e['pipeline_seconds']:.1f}s = {pipeline:.2f}x "
          f"(floor 0.85x)", flush=True)  # fmt: skip
    print(f"  peak RSS: server {e2e['server_peak_rss_mib']:.0f} MiB (idle before: "
          f"{e2e['server_rss_before_mib']:.0f} MiB), client {e2e['client_peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
    extra: dict[str, Any] = {}
    if workers > 1 and n == total:
        extra["end_to_end_workers"] = ew = end_to_end(artifact, device, n, chunk, k, total, workers)
        print(f"  end to end, {workers} workers, score-all --connections {2 * workers}: {ew['users_per_s']:.0f} users/s "
              f"({ew['seconds']:.1f}s)", flush=True)  # fmt: skip
    return {**extra,
        "shape": shape, "n_users": total, "n_items": int(manifest["n_items"]), "n_ratings": int(manifest["n_ratings"]),
        "device": device, "k": k, "chunk_users": chunk, "in_process": ip, "end_to_end": e2e,
        "ratio_e2e_over_in_process": ratio, "ratio_pipeline_over_in_process": pipeline,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="default", help="default | ml-25m | ml-1m | ml-100k | tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--users", type=int, default=None, help="score only the first N users (default all)")
    p.add_argument("--quick", action="store_true", help="20,000 users")
    p.add_argument("--chunk", type=int, default=1024, help="users per chunk / model step (default 1024)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="also end to end with this many server workers")
    a = p.parse_args()
    res = run(a.shape, a.device, a.users or (20_000 if a.quick else None), a.chunk, a.k, repeats=a.repeats,
              workers=a.workers)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
