from __future__ import annotations

import math

from movierec.trainer.report import evaluate_presets, markdown_table, report_png


def test_report_rows_table_and_png(tiny_ratings, tmp_path) -> None:
    train, test, catalog = tiny_ratings
    rows = evaluate_presets(train, test, catalog, ["popular", "ease"], split="tiny")
    assert [r["preset"] for r in rows] == ["popular", "ease"]
    for r in rows:
        assert math.isnan(r["rmse"])  # ranking-only presets answer no ratings
        assert 0.0 <= r["ndcg@10"] <= 1.0 and 0.0 <= r["recall@10"] <= 1.0 and r["seconds"] > 0
    table = markdown_table(rows)
    assert "| preset | RMSE | MAE | Recall@10 | NDCG@10 | HR@10 | train s |" in table
    assert "| popular | — | — |" in table
    report_png(rows, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
