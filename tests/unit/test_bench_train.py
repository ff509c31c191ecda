"""`make bench-train`'s code path on a tiny shape: child process per run, per-stage figures, table and plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: `bench` is not installed
from bench.bench_train import main  # noqa: E402


def test_bench_train_tiny_shape(tmp_path: Path) -> None:
    assert main(["--shapes", "tiny", "--presets", "best", "--out", str(tmp_path), "--threads", "1"]) == 0
    (record,) = json.loads((tmp_path / "train.json").read_text())
    assert record["status"] == "ok" and record["shape"] == "tiny" and record["ratings"] > 5000
    assert set(record["stages"]) == {"rating", "ranking", "cold-rating", "cold-ranking"}
    for stage in record["stages"].values():
        assert stage["seconds"] > 0 and stage["peak_rss_bytes"] > 0 and stage["cpu_seconds"] > 0
    assert record["peak_rss_bytes"] >= max(s["peak_rss_bytes"] for s in record["stages"].values())
    assert 0.5 < record["metrics"]["test_rmse"] < 1.5 and record["metrics"]["test_ndcg@10"] > 0
    table = (tmp_path / "train.md").read_text()
    assert "| tiny (300 x 200, 6,000) | best | ok |" in table
    assert 0 < record["test_users"] <= 300 and len(record["load_before"]) == 3  # every test user; the machine's load
    assert (tmp_path / "train.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.artifact"))  # the child removes its artifact


def test_bench_train_records_a_refusal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MOVIEREC_MEMORY_LIMIT", "1K")  # inherited by the child: every stage is refused
    assert main(["--shapes", "tiny", "--presets", "ease", "--out", str(tmp_path)]) == 0
    (record,) = json.loads((tmp_path / "train.json").read_text())
    assert record["status"] == "refused" and "not enough memory for the ranking model (ease)" in record["reason"]
    assert "refused: not enough memory" in (tmp_path / "train.md").read_text()


def test_bench_train_stops_a_run_by_its_cpu_time(tmp_path: Path) -> None:
    """--max-minutes counts the child's CPU time (a busy machine stretches wall time, not CPU time): a limit
    below what importing torch takes stops every run, and the record says so."""
    assert main(["--shapes", "tiny", "--presets", "ease", "--out", str(tmp_path), "--max-minutes", "0.001",
                 "--max-wall-minutes", "60"]) == 0  # fmt: skip
    (record,) = json.loads((tmp_path / "train.json").read_text())
    assert record["status"].startswith("stopped after") and record["cpu_seconds"] >= 0.06
