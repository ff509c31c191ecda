"""Data-parallel training with torchrun: 2 gloo processes on CPU against 1 process, and kill + resume.

Tolerance: each rank takes a strided share of every global mini-batch and weights its loss by its share of
the batch's rated entries, so the DDP-averaged gradient is the gradient of the same global batch a single
process sees; with the `classic` preset (no dropout) the two runs differ only by floating-point summation
order, so the validation RMSEs agree to well within RMSE_TOLERANCE = 0.01 (measured: ~1e-6).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
import torch.distributed as dist

from movierec.cli import main
from movierec.core.artifact import load_artifact, read_manifest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"),
]

RMSE_TOLERANCE = 0.01
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _write_udata(df: pd.DataFrame, path: Path) -> Path:
    df[["user", "item", "rating", "timestamp"]].astype({"rating": int}).to_csv(path, sep="\t", header=False, index=False)
    return path


@pytest.fixture()
def files(tiny_ratings, tmp_path: Path) -> list[str]:
    train, test, _ = tiny_ratings
    return ["--train", str(_write_udata(train, tmp_path / "train.data")),
            "--test", str(_write_udata(test, tmp_path / "test.data"))]


def test_two_gloo_ranks_reach_the_one_process_validation_rmse(files: list[str], tmp_path: Path) -> None:
    args = [*files, "--preset", "classic", "--epochs", "10", "--batch-size", "16", "--lr", "0.01",
            "--device", "cpu", "--quiet", "--json"]
    two = subprocess.run(  # `movierec train --nproc 2` re-executes itself through torch.distributed.run
        [sys.executable, "-m", "movierec.cli", "train", *args, "--nproc", "2", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=ENV, timeout=180,
    )
    assert two.returncode == 0, two.stderr[-4000:]
    metrics_two = json.loads(two.stdout)  # printed once, by rank 0
    assert main(["train", *args, "--out", str(tmp_path / "one")]) == 0
    one, m_two = read_manifest(tmp_path / "one").training, read_manifest(tmp_path / "two").training
    assert (one["world_size"], m_two["world_size"]) == (1, 2)
    assert one["epochs_run"] == m_two["epochs_run"] == 10
    print(f"valid RMSE 1 process {one['best_valid_rmse']!r}, 2 processes {m_two['best_valid_rmse']!r}")
    assert abs(one["best_valid_rmse"] - m_two["best_valid_rmse"]) < RMSE_TOLERANCE
    assert m_two["best_valid_rmse"] < 1.2  # it learned (ratings are 1..5)
    assert abs(metrics_two["test_rmse"] - json.loads((tmp_path / "one" / "metrics.json").read_text())["test_rmse"]) \
        < RMSE_TOLERANCE
    load_artifact(tmp_path / "two")
    assert not (tmp_path / "two.ckpt").exists()  # checkpoints go once the artifact is written


def test_killed_torchrun_resumes_to_a_valid_artifact(files: list[str], tmp_path: Path) -> None:
    epochs = 20
    out, ckpt = tmp_path / "art", tmp_path / "ckpt"
    (tmp_path / "cfg.json").write_text(json.dumps({"train": {"patience": 0}}))  # run every epoch
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "movierec.cli.torchrun_main", *files, "--preset", "classic", "--epochs", str(epochs),
           "--batch-size", "4", "--lr", "0.003", "--device", "cpu", "--quiet", "--config", str(tmp_path / "cfg.json"),
           "--out", str(out), "--checkpoint-dir", str(ckpt)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    ranks: list[psutil.Process] = []
    try:
        while not (ckpt / "rating.pt").exists():
            assert proc.poll() is None, f"torchrun ended before the first checkpoint: {proc.stderr.read()[-3000:]!r}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        ranks = psutil.Process(proc.pid).children(recursive=True)
        assert len(ranks) >= 2
        # SIGKILL torchrun alone (it cannot forward that): its ranks, each in a session of its own, must die
        # with it rather than train on and race the resumed run
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(ranks, timeout=15)
        assert not alive, f"ranks outlived torchrun: {alive}"
    finally:
        for p in ranks:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists()
    killed_at = int(torch.load(ckpt / "rating.pt", weights_only=True)["epoch"])
    assert 1 <= killed_at < epochs

    resumed = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    artifact = load_artifact(out)  # verifies every checksum
    training = artifact.meta["training"]
    assert training["resumed_from"] == killed_at and training["epochs_run"] == epochs
    assert training["world_size"] == 2
    print(f"killed after checkpoint of epoch {killed_at}, resumed from {training['resumed_from']}")
    assert not ckpt.exists()


def test_nproc_trains_the_default_preset(files: list[str], tmp_path: Path) -> None:
    """The blend's gradient-trained members train data-parallel; EASE, the kNN-baseline, BPMF and the
    cold-start hybrids run whole on every rank (said on stderr) and rank 0 writes the artifact."""
    two = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "train", *files, "--epochs", "3", "--device", "cpu", "--quiet",
         "--json", "--nproc", "2", "--out", str(tmp_path / "a")],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-4000:]
    assert "single-node on every rank (not trained by gradient steps): knn-baseline, bpmf, ease" in two.stderr
    assert 0 < json.loads(two.stdout)["test_rmse"] < 1.5
    artifact = load_artifact(tmp_path / "a")
    assert set(artifact.models) == {"rating", "ranking", "cold-rating", "cold-ranking"}


def test_distributed_module_needs_torchrun() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("WORLD_SIZE", "RANK")}
    r = subprocess.run([sys.executable, "-m", "movierec.cli.torchrun_main", "--out", "x"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "torchrun" in r.stderr
