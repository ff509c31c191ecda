"""`bench.bench_coalesce`'s README table from its results (no server needed)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench` is not installed

from bench.bench_coalesce import markdown  # noqa: E402


def _stat(median: float, lo: float, hi: float) -> dict[str, float]:
    return {"median": median, "min": lo, "max": hi}


def test_markdown_rows_show_medians_spreads_and_rpcs_per_call() -> None:
    res = {"callers": 64, "repeats": 3, "summary": {
        "off": {"calls_per_s": _stat(2619, 2581, 2759), "p50_ms": _stat(22.75, 20, 25), "p99_ms": _stat(44.48, 40, 50),
                "rpcs_per_call": _stat(1.0, 1.0, 1.0)},
        "1 ms": {"calls_per_s": _stat(11488, 11279, 11537), "p50_ms": _stat(5.43, 5, 6), "p99_ms": _stat(8.33, 8, 9),
                 "rpcs_per_call": _stat(0.0156, 0.0156, 0.0157)},
    }}  # fmt: skip
    md = markdown(res)
    assert "64 closed-loop callers" in md and "medians of 3 runs" in md
    assert "| off | 2,619 [2,581..2,759] | 22.75 | 44.48 | 1.000 |" in md
    assert "| 1 ms | 11,488 [11,279..11,537] | 5.43 | 8.33 | 0.016 |" in md
