"""Bulk scoring on Ray Data (local Ray, 1 and 2 workers) against the in-process scorer, same synthetic data.

    python -m bench.bench_ray [--shape default] [--workers 1 2]

Each run scores every user of the artifact into a fresh directory (one Parquet file per block); every worker
count runs `--repeats` times, interleaved. Reported: users/s, median with min and max (Ray start-up excluded:
one local Ray serves all runs; actor start-up included), and the peak RSS of one actor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.synthetic_data import build_artifact


def run(shape: str, workers: list[int], block_users: int = 4096, seed: int = 0, repeats: int = 3) -> dict[str, Any]:
    import ray

    from movierec.trainer.ray_scoring import score_all_ray

    artifact = build_artifact(Path(f"bench/results/synthetic-{shape}-seed{seed}"), shape, seed=seed)
    manifest = json.loads((artifact / "manifest.json").read_text())
    print(f"ray: {shape} ({manifest['n_users']} users x {manifest['n_items']} movies), local Ray on "
          f"{os.cpu_count()} CPUs, blocks of {block_users} users", flush=True)
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    all_runs: dict[str, list[dict[str, float]]] = {str(w): [] for w in workers}
    try:
        for r in range(repeats):  # interleaved: 1 worker, 2 workers, 1 worker, ...
            for w in workers:
                with tempfile.TemporaryDirectory() as tmp:
                    s = score_all_ray(artifact, Path(tmp) / "out", k=10, workers=w, block_users=block_users,
                                      device="cpu")  # fmt: skip
                all_runs[str(w)].append({"users_per_s": s.users_per_second, "seconds": s.seconds,
                                         "users_per_s_per_actor": s.users_per_second_per_actor,
                                         "actor_peak_rss_mib": s.actor_peak_rss_mib, "users": s.users})  # fmt: skip
                print(f"  run {r + 1}/{repeats}, {w} worker(s): {s.users_per_second:.0f} users/s ({s.seconds:.1f}s "
                      f"incl. actor start; {s.users_per_second_per_actor:.0f} users/s per actor while scoring), "
                      f"actor peak RSS {s.actor_peak_rss_mib:.0f} MiB", flush=True)  # fmt: skip
    finally:
        ray.shutdown()
    runs = {}
    for w, xs in all_runs.items():
        ups = [x["users_per_s"] for x in xs]
        median_run = sorted(xs, key=lambda x: x["users_per_s"])[len(xs) // 2]
        runs[w] = {**median_run, "users_per_s": statistics.median(ups), "min": min(ups), "max": max(ups)}
    return {"shape": shape, "ray_startup_s": startup, "repeats": repeats, "runs": runs, "all_runs": all_runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="default")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--block-users", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3, help="runs per worker count, interleaved (default 3)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    res = run(a.shape, a.workers, a.block_users, repeats=a.repeats)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
