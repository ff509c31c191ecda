"""Training time and peak memory per preset and per stage on synthetic MovieLens shapes (`make bench-train`).

    python -m bench.bench_train [--shapes 100k,1m,10m,25m] [--presets best] [--max-minutes 60] [--out bench/results]

Each (shape, preset) trains in a child process (`--child`) on ratings from the project's generator
(`movierec.trainer.synthetic`: long-tailed popularity, low-rank tastes, movie biases, noise; timestamps and a
genre catalog, so the cold-start models train too), with 10% of each user's ratings held out as the test file.
The child trains as `movierec train` does, its roles side by side in worker processes where the cores and
memory allow (`--jobs auto`). The parent polls the peak RSS: the child's own (VmHWM) or, when larger, the
sum over the child and its workers (sampled every 0.1 s); it stops the run after --max-minutes of the
tree's CPU time. The child records each stage's seconds and peak RSS (the artifact's `training.roles`: a
role trained in a worker reports that worker's own peak). A run refused by the memory check records
its one-line reason. Writes train.json, train.md (the table) and train.png (time and peak RSS against the
number of ratings) under --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SHAPES: dict[str, tuple[int, int, int]] = {
    "tiny": (300, 200, 6_000),
    "100k": (943, 1_682, 100_000),
    "1m": (6_040, 3_706, 1_000_209),
    "10m": (69_878, 10_677, 10_000_054),
    "25m": (162_541, 59_047, 25_000_095),
}


TEST_USERS = 20_000  # shapes with more test users are evaluated on a seeded sample of this many (reporting only)


def child(shape: str, preset_name: str, out: Path, threads: int | None) -> None:
    """Generate the shape, train the preset, write the figures as JSON to `out`."""
    from movierec.core.device import configure_threads
    from movierec.trainer.config import get_preset
    from movierec.trainer.data.splits import holdout_mask
    from movierec.trainer.memory import MemoryBudgetError, peak_rss
    from movierec.trainer.pipeline import run_training
    from movierec.trainer.synthetic import synthetic_catalog, synthetic_ratings

    configure_threads(threads)
    n_users, n_items, n_ratings = SHAPES[shape]
    t0 = time.perf_counter()
    df = synthetic_ratings(n_users, n_items, n_ratings, seed=0)
    catalog = synthetic_catalog(n_items)
    test = holdout_mask(df["user"].to_numpy(), 0.1, 1234)
    test_df = df[test]
    if test_df["user"].nunique() > TEST_USERS:  # large shapes: the test file of a seeded sample of users
        keep = np.random.default_rng(4321).choice(np.sort(test_df["user"].unique()), TEST_USERS, replace=False)
        test_df = test_df[test_df["user"].isin(keep)]
    data_s = time.perf_counter() - t0
    record: dict[str, Any] = {"shape": shape, "preset": preset_name, "ratings": len(df), "users": n_users,
                              "movies": n_items, "data_seconds": round(data_s, 1),
                              "test_users": int(test_df["user"].nunique()), "load_before": os.getloadavg()}  # fmt: skip
    t1 = time.perf_counter()
    try:
        outcome = run_training(df[~test], test_df, catalog, get_preset(preset_name), out.with_suffix(".artifact"),
                               dataset=f"synthetic-{shape}", progress=False, jobs=None)  # jobs: as movierec train
    except MemoryBudgetError as exc:
        record.update(status="refused", reason=str(exc), seconds=round(time.perf_counter() - t1, 1))
        out.write_text(json.dumps(record))
        return
    import shutil

    meta = json.loads((out.with_suffix(".artifact") / "manifest.json").read_text())["training"]
    record.update(
        status="ok",
        seconds=round(time.perf_counter() - t1, 1),
        child_peak_rss_bytes=peak_rss(),
        load_after=os.getloadavg(),
        stages={role: {"kind": r["kind"], "seconds": r["seconds"], "peak_rss_bytes": r.get("peak_rss_bytes", 0),
                       "cpu_seconds": r.get("cpu_seconds"), "members_left_out": r.get("members_left_out", []),
                       "epochs_run": r["epochs_run"], "stopped_by_time_budget": r.get("stopped_by_time_budget"),
                       "parts_seconds": r.get("parts_seconds", {})}
                for role, r in meta["roles"].items()},  # fmt: skip
        metrics={k: round(v, 4) for k, v in outcome.metrics.items() if isinstance(v, float)},
    )
    shutil.rmtree(out.with_suffix(".artifact"), ignore_errors=True)
    out.write_text(json.dumps(record))


def _kill_workers(pid: int) -> None:
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        for p in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def _tree(pid: int) -> tuple[int, float]:
    """(RSS bytes, user + system CPU seconds) of a live process and all its descendants, summed: the roles
    `movierec train` runs side by side live in worker processes of the trained one."""
    import psutil

    rss, cpu = 0, 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            rss += p.memory_info().rss
            times = p.cpu_times()
            cpu += times.user + times.system
    return rss, cpu


def run_one(shape: str, preset: str, out_dir: Path, max_minutes: float, threads: int | None,
            max_wall_minutes: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Train one (shape, preset) in a child; stop it past `max_minutes` of its CPU time (a busy machine
    stretches wall time, not CPU time) or `max_wall_minutes` of wall time (default 4 x max_minutes)."""
    from bench.common import proc_kib

    out = out_dir / f"train-{shape}-{preset}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.bench_train", "--child", shape, preset, str(out)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1])  # the repository root (package bench)
    peak = 0
    wall_deadline = t0 + (max_wall_minutes or 4 * max_minutes) * 60
    load_before = os.getloadavg()
    while proc.poll() is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            peak = max(peak, proc_kib(proc.pid, "VmHWM") * 1024)  # the child's own peak (not sampled)
        tree_rss, cpu = _tree(proc.pid)
        peak = max(peak, tree_rss)  # with worker processes: their sum, sampled every 0.1 s
        if cpu > max_minutes * 60 or time.perf_counter() > wall_deadline:
            _kill_workers(proc.pid)
            proc.kill()
            proc.wait()
            return {"shape": shape, "preset": preset, "users": SHAPES[shape][0], "movies": SHAPES[shape][1],
                    "ratings": SHAPES[shape][2], "status": f"stopped after {cpu / 60:.0f} CPU min",
                    "wall_seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(cpu, 1),
                    "peak_rss_bytes": peak, "load_before": load_before, "load_after": os.getloadavg()}  # fmt: skip
        time.sleep(0.05)
        time.sleep(0.05)
    record: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {
        "shape": shape, "preset": preset, "ratings": SHAPES[shape][2], "status": f"failed (exit {proc.returncode})"}
    record["wall_seconds"] = round(time.perf_counter() - t0, 1)
    record["cpu_seconds"] = round(_children_cpu() - cpu0, 1)  # user + system: what a busy machine does not stretch
    record["peak_rss_bytes"] = peak
    return record


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


ROLE_ORDER = {"rating": 0, "ranking": 1, "cold-rating": 2, "cold-ranking": 3}  # the order they train in


def _parts(stage: dict[str, Any]) -> str:
    parts = {k: v for k, v in stage.get("parts_seconds", {}).items() if v >= 0.5}
    return f" [{', '.join(f'{k} {v:.0f}' for k, v in parts.items())}]" if parts else ""


def _load(r: dict[str, Any]) -> str:
    """The 1-minute load average when the run started and ended (other jobs on the machine)."""
    before, after = r.get("load_before"), r.get("load_after")
    return f"{before[0]:.1f} / {after[0]:.1f}" if before and after else "—"


def _cpu(stage: dict[str, Any]) -> str:
    return f" (CPU {stage['cpu_seconds']:.0f})" if stage.get("cpu_seconds") is not None else ""


def _left_out(stage: dict[str, Any]) -> str:
    out = stage.get("members_left_out") or []
    return f"; left out: {', '.join(out)}" if out else ""


def _gib(n: float) -> str:
    return f"{n / 1024**3:.2f}"


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| shape (users x movies, ratings) | preset | status | train s | CPU s | peak RSS GiB | stages: s (CPU s) / peak GiB [parts s] | valid RMSE | test RMSE | test NDCG@10 | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        roles = sorted(r.get("stages", {}).items(), key=lambda kv: (ROLE_ORDER.get(kv[0], 9), kv[0]))
        stages = "; ".join(f"{role} ({s['kind']}{_left_out(s)}) {s['seconds']:.0f}{_cpu(s)} / {_gib(s['peak_rss_bytes'])}"
                           + _parts(s) for role, s in roles)  # fmt: skip
        m = r.get("metrics", {})
        status = r["status"] if r["status"] != "refused" else f"refused: {r.get('reason', '')}"
        lines.append(
            f"| {r['shape']} ({r.get('users', '?')} x {r.get('movies', '?')}, {r['ratings']:,}) | {r['preset']} | {status} "
            f"| {r.get('seconds', r.get('wall_seconds', 0)):.0f} | {r.get('cpu_seconds', float('nan')):.0f} "
            f"| {_gib(r.get('peak_rss_bytes', 0))} | {stages} "
            f"| {m.get('valid_rmse', float('nan')):.4f} | {m.get('test_rmse', float('nan')):.4f} "
            f"| {m.get('test_ndcg@10', float('nan')):.4f} | {_load(r)} |"
        )
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    colors = plt.get_cmap("tab20").colors  # one colour and marker per preset: 12 presets outrun tab10's cycle
    markers = "osD^v<>ph*Xd"
    for i, preset in enumerate(sorted({r["preset"] for r in records})):
        rows = sorted((r for r in records if r["preset"] == preset and r["status"] == "ok"), key=lambda r: r["ratings"])
        if not rows:
            continue
        n = [r["ratings"] for r in rows]
        style = {"marker": markers[i % len(markers)], "color": colors[(2 * i) % 20 + (i // 10) % 2], "label": preset}
        ax_t.plot(n, [r["seconds"] / 60 for r in rows], **style)
        ax_m.plot(n, [r["peak_rss_bytes"] / 1024**3 for r in rows], **style)
    for ax, ylabel in ((ax_t, "training time (min)"), (ax_m, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ratings")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        if ax.get_lines():
            ax.legend(fontsize=8, ncol=2)
    fig.suptitle(f"movierec training on synthetic shapes ({os.cpu_count()} CPUs, {platform.machine()})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("SHAPE", "PRESET", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--shapes", default="100k,1m,10m,25m", help=f"comma-separated, of: {', '.join(SHAPES)}")
    ap.add_argument("--presets", default="best", help="comma-separated preset names")
    ap.add_argument("--max-minutes", type=float, default=90.0,
                    help="stop a run after this many minutes of its CPU time (recorded as such)")
    ap.add_argument("--max-wall-minutes", type=float, default=None,
                    help="and after this many minutes of wall time (default: 4 x --max-minutes)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: as movierec train)")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    if args.child:
        shape, preset, out = args.child
        child(shape, preset, Path(out), args.threads)
        return 0
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}; choose from {', '.join(SHAPES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "train.json"
    previous = json.loads(results_path.read_text()) if results_path.exists() else []
    records = []
    for shape in shapes:
        for preset in [p for p in args.presets.split(",") if p]:
            rec = run_one(shape, preset, args.out, args.max_minutes, args.threads, args.max_wall_minutes)
            print(json.dumps(rec), flush=True)
            records.append(rec)
    # keep earlier runs of other (shape, preset) pairs, so shapes can be run one at a time
    done = {(r["shape"], r["preset"]) for r in records}
    merged = [r for r in previous if (r["shape"], r["preset"]) not in done] + records
    merged.sort(key=lambda r: (r["preset"], r["ratings"]))
    results_path.write_text(json.dumps(merged, indent=2))
    (args.out / "train.md").write_text(table(merged))
    plot(merged, args.out / "train.png")
    print(table(merged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
