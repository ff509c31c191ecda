"""`movierec report`: train every preset on ml-100k splits and write a markdown table and a PNG.

Protocol (docs/results.md): each preset is trained by `run_training` exactly as `movierec train` does (every
choice on a validation split carved from the training file) and evaluated on the test file with
`evaluate` — pooled RMSE/MAE over all test ratings; top-N with relevant = test rating >= 4 and candidates =
movies the user did not rate in training. EASE and most-popular are presets too, so the references are
computed by the same code in the same run. Training seconds are the wall time of `run_training`'s fitting.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from movierec.trainer.config import PRESETS, get_preset
from movierec.trainer.data import dataset_split_files, fetch_dataset, load_catalog, load_ratings, time_split
from movierec.trainer.pipeline import run_training

COLUMNS = ("rmse", "mae", "recall@10", "ndcg@10", "hit@10", "seconds")
TIME_SPLIT = "time"
TIME_FRACTION = 0.2


def load_split(data_dir: Path, split: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """(train, test, catalog) of ml-100k: a GroupLens fold u1..u5, or `time` (latest 20% of u.data as test)."""
    fetch_dataset("ml-100k", data_dir)
    if split == TIME_SPLIT:
        files = dataset_split_files("ml-100k", data_dir, "u1")
        train, test = time_split(load_ratings(data_dir / "ml-100k" / "u.data"), TIME_FRACTION)
    else:
        files = dataset_split_files("ml-100k", data_dir, split)
        train, test = load_ratings(files.train), load_ratings(files.test)
    catalog = load_catalog(files.catalog) if files.catalog is not None else None
    return train, test, catalog


def evaluate_presets(
    train: pd.DataFrame,
    test: pd.DataFrame,
    catalog: pd.DataFrame | None,
    presets: Sequence[str],
    *,
    split: str = "",
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate each preset on one split; one row of metrics per preset."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="movierec-report-") as tmp:
        for name in presets:
            preset = get_preset(name)
            t0 = time.perf_counter()
            out = run_training(
                train, test, catalog, preset, Path(tmp) / name,
                overrides={"train": {"device": device}}, dataset=f"ml-100k {split}", progress=False,
            )
            seconds = time.perf_counter() - t0
            m = out.metrics
            row = {
                "split": split,
                "preset": name,
                "description": preset.description,
                "rmse": m.get("test_rmse", math.nan),
                "mae": m.get("test_mae", math.nan),
                "recall@10": m.get("test_recall@10", math.nan),
                "ndcg@10": m.get("test_ndcg@10", math.nan),
                "hit@10": m.get("test_hit@10", math.nan),
                "seconds": seconds,
                "valid_rmse": m.get("valid_rmse", math.nan),
                "valid_ndcg@10": m.get("valid_ndcg@10", math.nan),
            }
            rows.append(row)
            if log is not None:
                log(
                    f"{split:5s} {name:11s} RMSE {row['rmse']:.4f} MAE {row['mae']:.4f} "
                    f"R@10 {row['recall@10']:.4f} NDCG@10 {row['ndcg@10']:.4f} HR@10 {row['hit@10']:.4f} "
                    f"{seconds:.1f}s"
                )
    return rows


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """One markdown table per split: preset, RMSE, MAE, Recall@10, NDCG@10, HR@10, training seconds."""
    out: list[str] = []
    for split in dict.fromkeys(r["split"] for r in rows):
        out += [
            f"### ml-100k {split}",
            "",
            "| preset | RMSE | MAE | Recall@10 | NDCG@10 | HR@10 | train s | what |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["split"] == split):
            out.append(
                f"| {r['preset']} | {_fmt(r['rmse'])} | {_fmt(r['mae'])} | {_fmt(r['recall@10'])} | "
                f"{_fmt(r['ndcg@10'])} | {_fmt(r['hit@10'])} | {_fmt(r['seconds'], 1)} | {r['description']} |"
            )
        out.append("")
    return "\n".join(out)


def report_png(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Bar charts of every metric (one panel each), presets on the x axis, one bar per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    frame = pd.DataFrame(rows)
    presets = list(dict.fromkeys(frame["preset"]))
    splits = list(dict.fromkeys(frame["split"]))
    titles = {"rmse": "RMSE (lower is better)", "mae": "MAE (lower is better)", "recall@10": "Recall@10",
              "ndcg@10": "NDCG@10", "hit@10": "HR@10", "seconds": "training seconds"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), dpi=72)
    width = 0.8 / max(len(splits), 1)
    x = np.arange(len(presets))
    for ax, col in zip(axes.ravel(), COLUMNS, strict=True):
        for j, split in enumerate(splits):
            sub = frame[frame["split"] == split].set_index("preset").reindex(presets)
            ax.bar(x + j * width, sub[col].to_numpy(dtype=float), width, label=split)
        ax.set_title(titles[col])
        ax.set_xticks(x + width * (len(splits) - 1) / 2)
        ax.set_xticklabels(presets, rotation=45, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if col in ("rmse", "mae"):
            vals = frame[col].to_numpy(dtype=float)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                ax.set_ylim(vals.min() * 0.97, vals.max() * 1.01)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def run_report(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    presets: Sequence[str] | None = None,
    splits: Sequence[str] = ("u1",),
    device: str = "cpu",
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    presets_by_split: dict[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Train `presets` (default: all) on each split; write results.md, results.png and results.json.

    `presets_by_split` overrides the preset list for the splits it names (e.g. fewer presets on extra folds).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    data_dir, out = Path(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(presets) if presets else list(PRESETS)
    if log is None:
        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    for split in splits:
        train, test, catalog = load_split(data_dir, split)
        chosen = list((presets_by_split or {}).get(split, names))
        rows += evaluate_presets(train, test, catalog, chosen, split=split, device=device, log=log)
    header = (
        "## Results (generated by `movierec report`)\n\n"
        "ml-100k; RMSE/MAE pooled over every test rating; Recall/NDCG/HR@10 with relevant = test rating >= 4 and "
        "candidates = movies unrated in training. Every hyperparameter and epoch was chosen on a validation "
        "split carved from the training file. `popular` and `ease` are the references, computed in the same run "
        f"by the same code. torch threads: {torch.get_num_threads()}.\n\n"
    )
    (out / "results.md").write_text(header + markdown_table(rows))
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    report_png(rows, out / "results.png")
    return rows
