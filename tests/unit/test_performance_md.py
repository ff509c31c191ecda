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
    assert "100,000 users x 20,000 movies" in md and "**0.90x** (floor 0.8x)" in md
    assert "ml-100k/u1" in md and "synthetic-default-seed0" in md
    assert "**2.00x** the naive server" in md and "**0.67x** the echo ceiling" in md  # ml-100k
    assert "**3.00x** the naive server" in md and "**0.50x** the echo ceiling" in md  # synthetic
    assert "| 64 | 2,000 calls/s" in md


def test_splice_replaces_only_the_marked_part() -> None:
    readme = f"# T\n\nbefore\n{BEGIN}\nold figures\n{END}\nafter\n"
    out = splice(readme, "new figures\n")
    assert out == f"# T\n\nbefore\n{BEGIN}\nnew figures\n{END}\nafter\n"
    assert splice(out, "new figures\n") == out  # idempotent
    with pytest.raises(SystemExit):
        splice("# no markers\n", "x")
