"""`make bench`: the bulk and online benchmarks in one run; figures printed, JSON + PNG in bench/results/.

python -m bench.run_all                 # full: 100k x 20k bulk (all users), online at 5 s per level
python -m bench.run_all --quick         # 20k users bulk, online at 2 s per level
python -m bench.run_all --device cuda   # what `make gpu-check` runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bench import (
    bench_bulk,
    bench_coalesce,
    bench_h2load,
    bench_online,
    bench_ray,
    bench_workers,
    performance_md,
)
from movierec.server import event_loop

RESULTS = Path("bench/results")
T = TypeVar("T")


def isolated(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a fresh interpreter (multiprocessing's spawn), its result sent back.

    Every benchmark runs this way, so that none measures what an earlier one left in the process: after the
    Ray runs the interpreter tracks four times the objects and keeps Ray's client threads, and a load generator
    there served a lone caller about a quarter fewer calls/s than one started fresh (README, Performance); the
    Python load generators' figures (p99 at concurrency 1 among them) would read that."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def machine(device: str) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "device": device,
        "event_loop": event_loop.resolve("auto"),  # what `movierec serve` runs on by default here
    }
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["online"] + (["online_synthetic"] if "online_synthetic" in res else [])
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(5.5 * (1 + len(panels)), 4))
    a = axes[0]
    bulk = res["bulk"]
    vals = [bulk["in_process"]["users_per_s"], bulk["end_to_end"]["users_per_s"]]
    a.bar(["in-process\nScorer", "server -> gRPC ->\nSDK -> Parquet"], vals, color=["#888", "#2a7"])
    a.set_ylabel("users / s")
    a.set_title(f"Bulk top-{bulk['k']}: {bulk['n_users']:,} x {bulk['n_items']:,} ({bulk['device']})")
    for b, key in zip(axes[1:], panels, strict=True):
        online = res[key]["results"]
        levels = list(online["movierec"])
        for name, color in (("movierec", "#2a7"), ("naive", "#c44"), ("echo", "#888")):
            b.plot(levels, [online[name][c]["calls_per_s"] for c in levels], "o-", label=name, color=color)
        b.set_xlabel("concurrent calls")
        b.set_ylabel("Recommend calls / s (1 user)")
        b.set_title(f"Online: {res[key]['dataset']} ({res[key]['device']})")
        b.legend()
    fig.suptitle(f"{res['machine']['cpu']} ({res['machine']['cores']} cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--shape", default="default", help="bulk data shape: default | ml-25m | ...")
    p.add_argument("--online-artifact", type=Path, default=None)
    p.add_argument("--no-ray", action="store_true", help="skip the Ray Data bulk runs")
    p.add_argument("--no-synthetic-online", action="store_true", help="online benchmark on ml-100k only")
    p.add_argument("--no-workers", action="store_true", help="skip the workers / metrics benchmark")
    p.add_argument("--no-h2load", action="store_true", help="skip the runs with h2load (C) as the load generator")
    p.add_argument("--repeats", type=int, default=3, help="runs of the bulk and workers benchmarks (medians)")
    p.add_argument("--conditions", default="", help="how busy the machine was, said in the README section")
    a = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"machine": machine(a.device), "quick": a.quick}
    res["machine"]["loadavg_start"] = list(os.getloadavg())  # how busy the machine was (1, 5, 15 min)
    repeats = 1 if a.quick else a.repeats
    res["bulk"] = isolated(bench_bulk.run, a.shape, a.device, 20_000 if a.quick else None, 1024, 10,
                           repeats=repeats, workers=1 if a.no_workers or a.device != "cpu" else 2)  # fmt: skip
    if not a.no_ray and a.device == "cpu":
        res["ray"] = isolated(bench_ray.run, "tiny" if a.quick else a.shape, [1, 2])
    calls, seconds = (300, 2.0) if a.quick else (1000, 5.0)
    res["online"] = isolated(bench_online.run, a.online_artifact, a.device, calls, seconds, [], repeats)
    if not a.no_synthetic_online:  # the same, on the bulk run's synthetic artifact (a larger catalog)
        synthetic = Path(f"bench/results/synthetic-{a.shape}-seed0")
        res["online_synthetic"] = isolated(bench_online.run, synthetic, a.device, calls, seconds, [], repeats)
    if not a.no_workers and a.device == "cpu":  # 1 and 2 workers, echo with as many processes, metrics on/off
        res["workers"] = isolated(bench_workers.run, a.online_artifact, repeats, 200 if a.quick else 500,
                                  2.0 if a.quick else 3.0)  # fmt: skip
        (RESULTS / "workers.json").write_text(json.dumps(res["workers"], indent=2))
        if a.no_h2load:
            pass
        elif bench_h2load.available():  # the same servers under a load generator that leaves them the cores
            res["h2load"] = isolated(bench_h2load.run, a.online_artifact, repeats, 2.0 if a.quick else 5.0)
            (RESULTS / "h2load.json").write_text(json.dumps(res["h2load"], indent=2))
        else:
            print("h2load not found (apt-get install nghttp2-client): the capacity runs with a C load generator "
                  "are skipped", flush=True)  # fmt: skip
        # the async SDK coalescing concurrent single-user calls (AsyncClient(coalesce_ms=...)), off and on
        res["coalesce"] = isolated(bench_coalesce.run, a.online_artifact, repeats, 2.0 if a.quick else 3.0)
    res["conditions"] = a.conditions
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    res["seconds"] = time.perf_counter() - t0
    tag = "" if a.device == "cpu" else f"-{a.device.replace(':', '')}"
    out_json, out_png = RESULTS / f"bench{tag}.json", RESULTS / f"bench{tag}.png"
    out_json.write_text(json.dumps(res, indent=2))
    plot(res, out_png)
    (RESULTS / f"performance{tag}.md").write_text(performance_md.render(res))
    r = res["online"]["ratios"]
    bulk = res["bulk"]
    print(f"\nbulk end-to-end / in-process, score-all's own clock: {bulk['ratio_pipeline_over_in_process']:.2f}x "
          f"(floor 0.85x); the whole command: {bulk['ratio_e2e_over_in_process']:.2f}x")
    print(f"online c=64: {r['c64_vs_naive']:.2f}x naive, {r['c64_vs_echo']:.2f}x echo; "
          f"p99 at c=1: {r['c1_p99_ms']:.2f} ms (floor 3 ms)")  # fmt: skip
    if "workers" in res:
        print("workers:", json.dumps(res["workers"]["ratios"]))
    if "h2load" in res:
        print("workers, h2load as the load generator:", json.dumps(res["h2load"]["ratios"]))
    if "online_synthetic" in res:
        r = res["online_synthetic"]["ratios"]
        print(f"online c=64 on {res['online_synthetic']['dataset']}: {r['c64_vs_naive']:.2f}x naive, "
              f"{r['c64_vs_echo']:.2f}x echo; p99 at c=1: {r['c1_p99_ms']:.2f} ms")  # fmt: skip
    if "ray" in res:
        runs = res["ray"]["runs"]
        print("ray data bulk: " + ", ".join(f"{w} worker(s) {r['users_per_s']:.0f} users/s" for w, r in runs.items())
              + f" (in-process {res['bulk']['in_process']['users_per_s']:.0f} users/s)")
    print(f"wrote {out_json} and {out_png} in {res['seconds']:.0f}s")


if __name__ == "__main__":
    main()
