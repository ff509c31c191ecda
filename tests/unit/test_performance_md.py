"""bench.performance_md: the README's performance section is rendered from bench JSON and spliced in place."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: `bench` is not installed
from bench.performance_md import BEGIN, END, render, splice  # noqa: E402


def _online(dataset: str, mv: float, naive: float, echo: float) -> dict:
    def lvl(rate: float) -> dict:
        return {"calls_per_s": rate, "p50_ms": 1.0, "p99_ms": 2.5}

    res = {n: {"1": lvl(r / 3), "64": lvl(r)} for n, r in (("movierec", mv), ("naive", naive), ("echo", echo))}
    return {"dataset": dataset, "n_users": 943, "n_items": 1650, "device": "cpu", "results": res,
            "ratios": {"c64_vs_naive": mv / naive, "c64_vs_echo": mv / echo, "c1_p99_ms": 2.5}}  # fmt: skip


def _res() -> dict:
    e2e = {"users_per_s": 900.0, "server_peak_rss_mib": 600, "server_rss_before_mib": 400, "client_peak_rss_mib": 150}
    return {
        "machine": {"cpu": "Test CPU", "cores": 2, "python": "3.11", "device": "cpu"},
        "bulk": {"k": 10, "n_users": 100_000, "n_items": 20_000, "n_ratings": 10_000_000, "chunk_users": 1024,
                 "in_process": {"users_per_s": 1000.0}, "end_to_end": e2e, "ratio_e2e_over_in_process": 0.9},
        "online": _online("ml-100k/u1", 2000.0, 1000.0, 3000.0),
        "online_synthetic": _online("synthetic-default-seed0", 1500.0, 500.0, 3000.0),
    }  # fmt: skip


def test_render_reports_the_measured_figures_and_ratios() -> None:
    md = render(_res())
    assert "Test CPU, 2 cores" in md
    assert "100,000 users x 20,000 movies" in md and "**0.90x** (floor 0.85x: met)" in md
    assert "ml-100k/u1" in md and "synthetic-default-seed0" in md
    assert "2.00x the naive server, 0.67x the echo server" in md  # ml-100k
    assert "3.00x the naive server, 0.50x the echo server" in md  # synthetic
    assert "| 64 | 2,000 calls/s" in md


def _workers() -> dict:
    def cfg(c64: float, extra: bool) -> dict:
        def m(x: float) -> dict:
            return {"median": x, "min": x * 0.9, "max": x * 1.1}

        lv = {str(c): {"calls_per_s": m(c64 * c / 64), "p50_ms": m(1.0), "p99_ms": m(2.0)} for c in (1, 8, 64)}
        out: dict = {**lv, "memory": {"rss_mib": m(400.0), "pss_mib": m(250.0)}}
        if extra:
            out |= {"batched32": {"users_per_s": m(20_000.0)}, "stream": {"users_per_s": m(4_000.0)}}
        return out

    summary = {"movierec-1w": cfg(2000, True), "movierec-1w-metrics": cfg(1950, False), "movierec-2w": cfg(3000, True),
               "movierec-2w-metrics": cfg(2700, False), "echo-1w": cfg(2400, False), "echo-2w": cfg(4000, False)}  # fmt: skip
    ratios = {"2w_over_1w_c64": 1.5, "1w_over_echo1w_c64": 2000 / 2400, "2w_over_echo2w_c64": 0.75,
              "metrics_cost_1w_c64": 0.025, "metrics_cost_2w_c64": 0.1, "p99_c1_ms_1w": 2.0, "p99_c1_ms_echo1w": 1.0}  # fmt: skip
    return {"artifact": "bench/results/synthetic-ml-100k-seed0", "repeats": 3, "summary": summary, "ratios": ratios}


def test_render_medians_spreads_workers_and_floors() -> None:
    res = _res()
    res["bulk"] |= {"ratio_runs": [0.8, 0.9, 1.0], "in_process_runs": [900.0, 1000.0, 1100.0],
                    "end_to_end_runs": [850.0, 900.0, 950.0], "end_to_end_workers_runs": [1400.0, 1500.0, 1600.0],
                    "workers": 2}  # fmt: skip
    res["workers"] = _workers()
    res["conditions"] = "a busy machine"
    md = render(res)
    assert "a busy machine" in md and "medians of 3 runs" in md
    assert "**0.90x** [0.80..1.00] (floor 0.85x: met)" in md
    assert "`serve --workers 2`" in md and "1,500 [1,400..1,600] users/s" in md
    assert "| movierec, 2 workers | " in md and "20,000 [18,000..22,000]" in md and "400 / 250" in md
    assert "**1.50x** 1 worker (floor 1.4x: met)" in md
    assert "**0.83x** the one-process echo (floor 0.8x: met)" in md
    assert "**+2%** (1 worker) and **+10%** (2 workers) of calls/s (floor 5%: **not met**)" in md
    assert "**2.0 ms** (floor 3 ms: met" in md


def test_render_reads_the_bulk_floor_on_score_alls_own_clock_and_shows_the_whole_command() -> None:
    res = _res()
    res["bulk"] |= {"ratio_runs": [0.78, 0.8, 0.82], "in_process_runs": [900.0, 1000.0, 1100.0],
                    "end_to_end_runs": [780.0, 800.0, 820.0], "pipeline_ratio_runs": [0.86, 0.9, 0.95],
                    "pipeline_runs": [860.0, 900.0, 950.0]}  # fmt: skip
    md = render(res)
    assert "900 [860..950] users/s by score-all's own clock" in md
    assert "**0.90x** [0.86..0.95] (floor 0.85x: met)" in md
    assert "(the whole `score-all` command) 800 [780..820] users/s = 0.80x [0.78..0.82]" in md
    res["bulk"]["pipeline_ratio_runs"] = [0.8, 0.82, 0.84]
    assert "**0.82x** [0.80..0.84] (floor 0.85x: **not met**)" in render(res)


def test_render_adds_the_h2load_table_and_its_floors() -> None:
    res = _res()
    names = ("movierec-1w", "movierec-1w-metrics", "movierec-2w", "movierec-2w-metrics", "echo-1w", "echo-2w")
    summary = {n: {"64": {"calls_per_s": {"median": 1000.0 * (i + 1), "min": 900.0 * (i + 1), "max": 1100.0 * (i + 1)}},
                   "1": {"calls_per_s": {"median": 500.0, "min": 400.0, "max": 600.0}}} for i, n in enumerate(names)}
    ratios = {"2w_over_1w_c64": 3.0, "1w_over_echo1w_c64": 0.2, "2w_over_echo2w_c64": 0.5, "echo2w_over_echo1w_c64": 1.2,
              "metrics_cost_1w_c64": 0.01, "metrics_cost_2w_c64": 0.02}  # fmt: skip
    res["h2load"] = {"artifact": "artifacts/ml-100k-u1", "user": 215, "repeats": 3, "seconds": 5.0,
                     "levels": {"64": [64, 1], "1": [1, 1]}, "summary": summary, "ratios": ratios}  # fmt: skip
    md = render(res)
    assert "**The same servers under h2load**" in md and "user 215" in md and "c=64: 64 connection(s) x 1 stream(s)" in md
    assert "| movierec, 2 workers | 3,000 [2,700..3,300] | 500 [400..600] |" in md
    assert "2 workers = **3.00x** 1 worker (floor 1.4x: met; the echo server's own 2 / 1 processes: 1.20x)" in md
    assert "**0.20x** the one-process echo (floor 0.8x: **not met**);" in md  # no uvloop echo in this run

    # a run with the echo server on uvloop too: its row and its ratio
    res["h2load"]["summary"]["echo-1w-uvloop"] = summary["echo-2w"]
    res["h2load"]["ratios"]["1w_over_echo1w_uvloop_c64"] = 0.15
    res["machine"]["event_loop"] = "uvloop"
    md = render(res)
    assert "| grpc.aio echo, 1 process, uvloop | 6,000 [5,400..6,600] | 500 [400..600] |" in md
    assert "(floor 0.8x: **not met**) and 0.15x the same echo on uvloop" in md
    assert "`movierec serve` on its default event loop, uvloop;" in md
    assert "where the gap lies" not in md  # no batched echo in this run

    # and the echo behind movierec's batcher: its row and where the gap lies
    res["h2load"]["summary"]["echo-batched-1w-uvloop"] = summary["movierec-2w"]
    res["h2load"]["ratios"] |= {"echo_batched_over_echo1w_uvloop_c64": 0.95, "1w_over_echo_batched_uvloop_c64": 0.6}
    md = render(res)
    assert "| echo behind movierec's batcher (a model step that does nothing), 1 process, uvloop | 3,000 [2,700..3,300] |" in md
    assert "batching alone (echo behind movierec's batcher, a model step that does nothing) keeps 0.95x of the echo" in md
    assert "leaves 1 worker at 0.60x that batched echo" in md


def test_splice_replaces_only_the_marked_part() -> None:
    readme = f"# T\n\nbefore\n{BEGIN}\nold figures\n{END}\nafter\n"
    out = splice(readme, "new figures\n")
    assert out == f"# T\n\nbefore\n{BEGIN}\nnew figures\n{END}\nafter\n"
    assert splice(out, "new figures\n") == out  # idempotent
    with pytest.raises(SystemExit):
        splice("# no markers\n", "x")


def test_render_gives_ray_medians_with_their_spread() -> None:
    res = _res()
    res["ray"] = {"repeats": 3, "runs": {"1": {"users_per_s": 8000.0, "min": 7000.0, "max": 9000.0},
                                         "2": {"users_per_s": 12000.0, "min": 11000.0, "max": 12500.0}}}  # fmt: skip
    md = render(res)
    assert ("**Ray Data** bulk on a local Ray (same scorer; medians of 3 runs): 1 worker(s) 8,000 [7,000..9,000] "
            "users/s, 2 worker(s) 12,000 [11,000..12,500] users/s (incl. actor start-up).") in md  # fmt: skip
