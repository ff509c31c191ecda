"""Render `make bench` results (bench/results/bench.json) as the README's performance section (markdown).

    python -m bench.performance_md                      # print the section
    python -m bench.performance_md --readme README.md   # replace the part between the README's markers

The README keeps the generated part between `<!-- bench:begin -->` and `<!-- bench:end -->`; prose about
what bounds the figures lives outside the markers and is written by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _spread(lo: float, hi: float, fmt: str = ",.0f") -> str:
    return f"[{lo:{fmt}}..{hi:{fmt}}]"


def _online_table(online: dict[str, Any]) -> list[str]:
    res = online["results"]
    lines = [
        "| concurrency | movierec (dynamic batching) | naive (one forward per request) | grpc.aio echo (ceiling) |",
        "|---|---|---|---|",
    ]
    for c in res["movierec"]:
        cells = []
        for name in ("movierec", "naive", "echo"):
            r = res[name][c]
            spread = f" {_spread(r['calls_per_s_min'], r['calls_per_s_max'])}" if "calls_per_s_min" in r else ""
            cells.append(f"{r['calls_per_s']:,.0f}{spread} calls/s (p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms)")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    r = online["ratios"]
    lines += [
        "",
        f"At concurrency 64 (medians): {r['c64_vs_naive']:.2f}x the naive server, {r['c64_vs_echo']:.2f}x the echo "
        f"server; p99 at concurrency 1: {r['c1_p99_ms']:.2f} ms (echo {res['echo']['1']['p99_ms']:.2f} ms).",
    ]
    return lines


WORKER_ROWS = (
    ("movierec-1w", "movierec, 1 worker"),
    ("movierec-1w-metrics", "movierec, 1 worker, metrics on"),
    ("movierec-2w", "movierec, 2 workers"),
    ("movierec-2w-metrics", "movierec, 2 workers, metrics on"),
    ("echo-1w", "grpc.aio echo, 1 process"),
    ("echo-1w-uvloop", "grpc.aio echo, 1 process, uvloop"),
    ("echo-batched-1w-uvloop", "echo behind movierec's batcher (a model step that does nothing), 1 process, uvloop"),
    ("echo-2w", "grpc.aio echo, 2 processes"),
)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _workers_section(w: dict[str, Any]) -> list[str]:
    s = w["summary"]

    def cps(name: str, level: str) -> str:
        x = s[name][level]["calls_per_s"]
        return f"{x['median']:,.0f} {_spread(x['min'], x['max'])}"

    def users(name: str, key: str) -> str:
        if key not in s[name]:
            return "—"
        x = s[name][key]["users_per_s"]
        return f"{x['median']:,.0f} {_spread(x['min'], x['max'])}"

    lines = [
        f"**Workers and metrics** (`python -m bench.bench_workers`, run by `make bench`: Recommend, 1 user, k=10, on "
        f"`{Path(w['artifact']).name}`; closed-loop callers over up to 16 connections, each call on the connection "
        f"with the fewest in flight; every configuration started {w['repeats']} times, interleaved; medians, "
        "[min..max]; users/s through batched Recommend: 32 users per call, 8 callers; through StreamRecommend: 8 "
        "streams, one user per request, 64 in flight per stream):",
        "",
        "| server | c=1 calls/s | c=8 calls/s | c=64 calls/s | p99 c=1 ms | Recommend x32 users/s | "
        "StreamRecommend users/s | RSS / PSS MiB (all processes) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label in WORKER_ROWS:
        if key not in s:
            continue
        p99 = s[key]["1"]["p99_ms"]
        mem = s[key]["memory"]
        lines.append(
            f"| {label} | {cps(key, '1')} | {cps(key, '8')} | {cps(key, '64')} | {p99['median']:.1f} "
            f"{_spread(p99['min'], p99['max'], '.1f')} | {users(key, 'batched32')} | {users(key, 'stream')} | "
            f"{mem['rss_mib']['median']:,.0f} / {mem['pss_mib']['median']:,.0f} |"
        )
    r = w["ratios"]
    lines += [
        "",
        "Floors (medians at concurrency 64): 2 workers = "
        f"**{r['2w_over_1w_c64']:.2f}x** 1 worker (floor 1.4x: {_met(r['2w_over_1w_c64'] >= 1.4)}); 1 worker = "
        f"**{r['1w_over_echo1w_c64']:.2f}x** the one-process echo (floor 0.8x: {_met(r['1w_over_echo1w_c64'] >= 0.8)}); "
        f"2 workers = {r['2w_over_echo2w_c64']:.2f}x the two-process echo; metrics cost "
        f"**{100 * r['metrics_cost_1w_c64']:+.0f}%** (1 worker) and **{100 * r['metrics_cost_2w_c64']:+.0f}%** "
        f"(2 workers) of calls/s (floor 5%: {_met(max(r['metrics_cost_1w_c64'], r['metrics_cost_2w_c64']) <= 0.05)}); "
        f"p99 at concurrency 1: **{r['p99_c1_ms_1w']:.1f} ms** (floor 3 ms: {_met(r['p99_c1_ms_1w'] <= 3.0)}; the "
        f"echo server's: {r.get('p99_c1_ms_echo1w', float('nan')):.1f} ms).",
    ]
    return lines


def _h2load_section(h: dict[str, Any]) -> list[str]:
    s = h["summary"]
    levels = list(h["levels"])

    def cps(name: str, level: str) -> str:
        x = s[name][level]["calls_per_s"]
        return f"{x['median']:,.0f} {_spread(x['min'], x['max'])}"

    lines = [
        "**The same servers under h2load** (`python -m bench.bench_h2load`, run by `make bench` when `h2load` "
        "is installed: nghttp2's load generator, in C, one thread; Recommend for one user (the median rater, "
        f"user {h['user']}), k=10, on `{Path(h['artifact']).name}`; " + ", ".join(
            f"c={lv}: {c} connection(s) x {m} stream(s)" for lv, (c, m) in h["levels"].items())
        + f"; {h['seconds']:g} s per level; every configuration started {h['repeats']} times, interleaved; "
        "medians, [min..max]; each run checks that every answer carried a full recommendation list). The Python "
        "load generator above costs about as much CPU per call as the echo server itself, on the same two cores; "
        "h2load costs a fraction of that, so these figures read the servers:",
        "",
        "| server | " + " | ".join(f"c={lv} calls/s" for lv in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]  # fmt: skip
    for key, label in WORKER_ROWS:
        if key in s:
            lines.append(f"| {label} | " + " | ".join(cps(key, lv) for lv in levels) + " |")
    r = h["ratios"]
    lines += [
        "",
        "Floors under h2load (medians at concurrency 64): 2 workers = "
        f"**{r['2w_over_1w_c64']:.2f}x** 1 worker (floor 1.4x: {_met(r['2w_over_1w_c64'] >= 1.4)}; the echo "
        f"server's own 2 / 1 processes: {r['echo2w_over_echo1w_c64']:.2f}x); 1 worker = "
        f"**{r['1w_over_echo1w_c64']:.2f}x** the one-process echo (floor 0.8x: {_met(r['1w_over_echo1w_c64'] >= 0.8)})"
        + (f" and {r['1w_over_echo1w_uvloop_c64']:.2f}x the same echo on uvloop (movierec serves on uvloop, its "
           "default; the echo server on the standard loop is bare grpc.aio)" if "1w_over_echo1w_uvloop_c64" in r else "")
        + (f"; where the gap lies: batching alone (echo behind movierec's batcher, a model step that does "
           f"nothing) keeps {r['echo_batched_over_echo1w_uvloop_c64']:.2f}x of the echo on uvloop, and movierec's own "
           f"work per call (validation, the model step, the reply) leaves 1 worker at "
           f"{r['1w_over_echo_batched_uvloop_c64']:.2f}x that batched echo" if "1w_over_echo_batched_uvloop_c64" in r else "")
        + f"; 2 workers = {r['2w_over_echo2w_c64']:.2f}x the two-process echo; metrics cost "
        f"**{100 * r['metrics_cost_1w_c64']:+.0f}%** (1 worker) and **{100 * r['metrics_cost_2w_c64']:+.0f}%** "
        f"(2 workers) of calls/s (floor 5%: {_met(max(r['metrics_cost_1w_c64'], r['metrics_cost_2w_c64']) <= 0.05)}).",
    ]  # fmt: skip
    return lines


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    bulk = res["bulk"]
    ip, e2e = bulk["in_process"], bulk["end_to_end"]
    n = len(bulk.get("ratio_runs", [1]))
    conditions = res.get("conditions") or "conditions not recorded"
    if "loadavg_start" in m:
        conditions += (f" (load average {m['loadavg_start'][1]:.1f} over the 5 minutes before the run, "
                       f"{m['loadavg_end'][1]:.1f} at its end, on {m['cores']} cores)")  # fmt: skip
    out = [
        f"Generated by `python -m bench.performance_md` from one `make bench` run{' (--quick)' if res.get('quick') else ''}: "
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, device {m['device']}"
        f"{' (' + m['gpu'] + ')' if m.get('gpu') else ''}"
        f"{'; `movierec serve` on its default event loop, ' + m['event_loop'] if m.get('event_loop') else ''}; the load generators share the machine with the servers; "
        f"{conditions}. Figures are medians of {n} runs with [min..max] unless said otherwise.",
        "",
    ]
    if "ratio_runs" in bulk:
        rr, ipr, er = bulk["ratio_runs"], bulk["in_process_runs"], bulk["end_to_end_runs"]
        import statistics

        ratio = statistics.median(rr)
        line = (
            f"**Bulk top-{bulk['k']}** (synthetic {bulk['n_users']:,} users x {bulk['n_items']:,} movies, "
            f"{bulk['n_ratings']:,} ratings, {bulk['chunk_users']:,} users per chunk): in-process `Scorer` "
            f"{statistics.median(ipr):,.0f} {_spread(min(ipr), max(ipr))} users/s (model loaded beforehand, "
            "not timed); server -> gRPC stream -> SDK -> Parquet on disk "
        )
        if "pipeline_ratio_runs" in bulk:  # score-all's own clock: request sent to file closed
            pr, pu = bulk["pipeline_ratio_runs"], bulk["pipeline_runs"]
            pipe = statistics.median(pr)
            line += (
                f"{statistics.median(pu):,.0f} {_spread(min(pu), max(pu))} users/s by score-all's own clock (from "
                f"sending the request to the Parquet file closed) = **{pipe:.2f}x** {_spread(min(pr), max(pr), '.2f')} "
                f"(floor 0.85x: {_met(pipe >= 0.85)}); with the client's interpreter start, imports and channel "
                f"set-up (the whole `score-all` command) {statistics.median(er):,.0f} {_spread(min(er), max(er))} "
                f"users/s = {ratio:.2f}x {_spread(min(rr), max(rr), '.2f')}."
            )
        else:
            line += (
                f"{statistics.median(er):,.0f} {_spread(min(er), max(er))} users/s = **{ratio:.2f}x** "
                f"{_spread(min(rr), max(rr), '.2f')} (floor 0.85x: {_met(ratio >= 0.85)})."
            )
        if "end_to_end_workers_runs" in bulk:
            wr = bulk["end_to_end_workers_runs"]
            line += (f" With `serve --workers {bulk['workers']}` (1 torch thread each) and `score-all --connections "
                     f"{2 * bulk['workers']}`: {statistics.median(wr):,.0f} {_spread(min(wr), max(wr))} users/s.")  # fmt: skip
        line += (f" Peak RSS (median run): server {e2e['server_peak_rss_mib']:,.0f} MiB "
                 f"({e2e['server_rss_before_mib']:,.0f} MiB idle before), client {e2e['client_peak_rss_mib']:,.0f} MiB.")  # fmt: skip
        out.append(line)
    else:
        ratio = bulk["ratio_e2e_over_in_process"]
        out.append(
            f"**Bulk top-{bulk['k']}** (synthetic {bulk['n_users']:,} users x {bulk['n_items']:,} movies, one run): "
            f"in-process {ip['users_per_s']:,.0f} users/s; end to end {e2e['users_per_s']:,.0f} users/s = "
            f"**{ratio:.2f}x** (floor 0.85x: {_met(ratio >= 0.85)})."
        )
    if "ray" in res:
        runs = res["ray"]["runs"]
        n_ray = res["ray"].get("repeats", 1)
        out += ["", f"**Ray Data** bulk on a local Ray (same scorer; {'one run' if n_ray == 1 else f'medians of {n_ray} runs'}): "
                + ", ".join(f"{w} worker(s) {r['users_per_s']:,.0f}"
                            + (f" {_spread(r['min'], r['max'])}" if "min" in r else "") + " users/s"
                            for w, r in runs.items()) + " (incl. actor start-up)."]  # fmt: skip
    for key in ("online", "online_synthetic"):
        if key not in res:
            continue
        o = res[key]
        out += [
            "",
            f"**Online `Recommend`**, one user per call, k=10, one connection — {o['dataset']} ({o['n_users']:,} "
            f"users x {o['n_items']:,} movies, device {o['device']}; medians of {o.get('repeats', 1)} runs, calls/s "
            "[min..max]):",
            "",
            *_online_table(o),
        ]
    if "workers" in res:
        out += ["", *_workers_section(res["workers"])]
    if "h2load" in res:
        out += ["", *_h2load_section(res["h2load"])]
    if "coalesce" in res:
        from bench.bench_coalesce import markdown as coalesce_markdown

        out += ["", coalesce_markdown(res["coalesce"]).rstrip("\n")]
    out += ["", "Plot: `docs/performance.png` (from `bench/results/bench.png`); raw figures: `bench/results/bench.json`."]
    return "\n".join(out) + "\n"


def splice(readme: str, section: str) -> str:
    """The README with the text between the bench markers replaced by `section`."""
    try:
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"README has no {BEGIN} ... {END} markers") from None
    return f"{head}{BEGIN}\n{section}{END}{tail}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("bench/results/bench.json"))
    p.add_argument("--readme", type=Path, default=None, help="splice the section into this README")
    p.add_argument("--conditions", default=None, help="how busy the machine was (overrides the run's own note)")
    a = p.parse_args()
    res = json.loads(a.json.read_text())
    if a.conditions is not None:
        res["conditions"] = a.conditions
    section = render(res)
    if a.readme:
        a.readme.write_text(splice(a.readme.read_text(), section))
        print(f"updated {a.readme}")
    else:
        print(section, end="")


if __name__ == "__main__":
    main()
