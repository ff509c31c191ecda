"""Classic preset: the notebook's one-user-at-a-time loop against the vectorized mini-batch loop, same process.

    python bench/bench_train_speed.py [--data-dir data] [--epochs 200] [--out bench/results/train_speed.json]

Both run the full epoch count on ml-100k u1.base (no early stopping for the timing) and are evaluated on
u1.test: the notebook's own metric (mean of per-user RMSE, unclipped, as the notebook computed it) for the
faithful loop, and pooled RMSE/MAE (clipped to [1, 5]) plus the same per-user metric for ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from movierec.core.device import configure_threads
from movierec.trainer.config import CLASSIC
from movierec.trainer.data import dataset_split_files, fetch_dataset, load_ratings
from movierec.trainer.faithful import train_faithful
from movierec.trainer.pipeline import run_training


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/train_speed.json"))
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both loops (default: as movierec train)")
    args = ap.parse_args()
    configure_threads(args.threads)
    if not (args.data_dir / "ml-100k").is_dir():
        fetch_dataset("ml-100k", args.data_dir)
    files = dataset_split_files("ml-100k", args.data_dir, "u1")
    train, test = load_ratings(files.train), load_ratings(files.test)

    t0 = time.perf_counter()
    ours = run_training(
        train,
        test,
        None,
        dataclasses.replace(
            CLASSIC,
            train=dataclasses.replace(
                CLASSIC.train, epochs=args.epochs, patience=0, seed=args.seed, device="cpu"
            ),
        ),
        args.out.parent / "classic-u1-artifact",
        dataset="ml-100k/u1",
        progress=False,
    )
    ours_s = time.perf_counter() - t0
    faithful = train_faithful(train, test, epochs=args.epochs, seed=args.seed, progress=False)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "epochs": args.epochs,
        "faithful": {
            "seconds": round(faithful.seconds, 2),
            "notebook_test_loss": round(faithful.test_loss, 4),
        },
        "vectorized": {
            "seconds_fit": round(ours.fit.seconds, 2),
            "seconds_total_with_eval_and_save": round(ours_s, 2),
            "batch_size": CLASSIC.train.batch_size,
            "test_rmse": round(ours.metrics["test_rmse"], 4),
            "test_mae": round(ours.metrics["test_mae"], 4),
            "test_mean_user_rmse": round(ours.metrics["test_mean_user_rmse"], 4),
        },
        "speedup_fit": round(faithful.seconds / ours.fit.seconds, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
