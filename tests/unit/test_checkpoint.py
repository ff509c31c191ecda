"""Checkpoints: atomic, weights_only-loadable, and a resumed `fit` continues exactly where the killed one was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from movierec.core.sparse import Csr, IdMap
from movierec.trainer.checkpoint import (
    CheckpointSpec,
    default_checkpoint_dir,
    load_checkpoint,
    remove_checkpoints,
    save_checkpoint,
)
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.data import holdout_mask
from movierec.trainer.pipeline import ratings_matrix
from movierec.trainer.train import EpochStats, FitResult, fit


class Killed(Exception):
    pass


def _matrices(train: pd.DataFrame) -> tuple[Csr, Csr, int]:
    users, items = IdMap.from_ids(train.user), IdMap.from_ids(train.item)
    mask = holdout_mask(train.user.to_numpy(), 0.1, 0)
    return ratings_matrix(train[~mask], users, items), ratings_matrix(train[mask], users, items), len(items)


def _kill_during(epoch: int) -> Callable[[EpochStats], None]:
    def on_epoch(stats: EpochStats) -> None:
        if stats.epoch == epoch:  # before this epoch's checkpoint: the file holds epoch - 1
            raise Killed

    return on_epoch


def _same_weights(a: FitResult, b: FitResult) -> None:
    for (k, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(va, vb), k


def test_save_is_atomic_weights_only_and_keyed(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "rating.pt"
    save_checkpoint(path, {"key": "k1", "epoch": 3, "t": torch.arange(4), "nested": {"a": [1.0, None], "b": (1, 2)}})
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 3 and torch.equal(state["t"], torch.arange(4))
    assert [p.name for p in path.parent.iterdir()] == ["rating.pt"]  # no temp file left behind
    loaded = load_checkpoint(path, "k1")
    assert loaded is not None and loaded["nested"]["a"] == [1.0, None]
    with pytest.raises(ValueError, match="another training"):
        load_checkpoint(path, "k2")
    assert load_checkpoint(tmp_path / "none.pt", "k1") is None


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rating.pt"
    save_checkpoint(path, {"key": "k", "epoch": 1})

    def crash(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"key": "k", "epoch": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["rating.pt"]
    state = load_checkpoint(path, "k")
    assert state is not None and state["epoch"] == 1
    path.write_bytes(b"torn")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(path, "k")


def test_remove_checkpoints_only_ours(tmp_path: Path) -> None:
    d = default_checkpoint_dir(tmp_path / "art")
    assert d == tmp_path / "art.ckpt"
    for name in ("rating.pt", "rating-member0.pt", "ranking.pt"):
        save_checkpoint(d / name, {"key": "k"})
    (d / ".rating.pt.tmp-x1y2").write_bytes(b"torn")  # left by a writer killed mid-write
    remove_checkpoints(d, ["rating", "ranking"])
    assert not d.exists()
    save_checkpoint(d / "rating.pt", {"key": "k"})
    (d / "notes.txt").write_text("keep")
    remove_checkpoints(d, ["rating"])
    assert [p.name for p in d.iterdir()] == ["notes.txt"]


AE = (
    ModelConfig(hidden=(16, 8, 16), input_dropout=0.2, dropout=0.1),  # dropout: resuming must restore the RNG
    TrainConfig(epochs=8, batch_size=16, optimizer="adam", lr=0.01, device="cpu", patience=0, seed=3),
)
VAE = (
    ModelConfig(kind="multvae", hidden=(32, 8), activation="tanh", input_dropout=0.5,
                extra={"variational": True, "beta_max": 0.2, "anneal_steps": 20}),  # KL weight: its step counter
    TrainConfig(epochs=8, batch_size=16, optimizer="adam", lr=1e-3, loss="multinomial", device="cpu", patience=0),
)


@pytest.mark.parametrize("configs", [AE, VAE], ids=["dropout-autoencoder", "mult-vae"])
def test_killed_fit_resumes_bitwise(tiny_ratings, tmp_path: Path, configs: tuple[ModelConfig, TrainConfig]) -> None:
    tr, va, n_items = _matrices(tiny_ratings[0])
    mcfg, tcfg = configs
    mcfg = ModelConfig.from_dict({**mcfg.to_dict(), "n_items": n_items})
    whole = fit(tr, va, mcfg, tcfg, progress=False)
    spec = CheckpointSpec(tmp_path / "rating.pt")
    with pytest.raises(Killed):
        fit(tr, va, mcfg, tcfg, progress=False, on_epoch=_kill_during(5), checkpoint=spec)
    assert torch.load(spec.path, weights_only=True)["epoch"] == 4
    resumed = fit(tr, va, mcfg, tcfg, progress=False, checkpoint=CheckpointSpec(spec.path, resume=True))
    assert resumed.resumed_from == 4
    assert [h.epoch for h in resumed.history] == list(range(1, 9))
    key = "valid_ndcg" if mcfg.kind == "multvae" else "valid_rmse"
    assert [getattr(h, key) for h in resumed.history] == [getattr(h, key) for h in whole.history]
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in whole.history]
    assert resumed.best_epoch == whole.best_epoch
    _same_weights(resumed, whole)


def test_resume_keeps_early_stopping_state(tiny_ratings, tmp_path: Path) -> None:
    tr, va, n_items = _matrices(tiny_ratings[0])
    mcfg = ModelConfig(n_items=n_items, hidden=(64, 32, 64), activation="relu")
    tcfg = TrainConfig(epochs=300, batch_size=8, lr=0.05, device="cpu", patience=3, seed=1)
    whole = fit(tr, va, mcfg, tcfg, progress=False)
    assert whole.stopped_early
    spec = CheckpointSpec(tmp_path / "rating.pt")
    with pytest.raises(Killed):  # killed two epochs after the best: one epoch without improvement is saved
        fit(tr, va, mcfg, tcfg, progress=False, on_epoch=_kill_during(whole.best_epoch + 2), checkpoint=spec)
    resumed = fit(tr, va, mcfg, tcfg, progress=False, checkpoint=CheckpointSpec(spec.path, resume=True))
    assert resumed.resumed_from == whole.best_epoch + 1
    assert resumed.stopped_early and len(resumed.history) == len(whole.history) == whole.best_epoch + 3
    assert resumed.best_epoch == whole.best_epoch and resumed.best_valid_rmse == whole.best_valid_rmse
    _same_weights(resumed, whole)
    # a finished (early-stopped) checkpoint resumes to the same result without training further
    again = fit(tr, va, mcfg, tcfg, progress=False, checkpoint=CheckpointSpec(spec.path, resume=True))
    assert again.resumed_from == len(whole.history) and len(again.history) == len(whole.history)
    _same_weights(again, whole)


def test_resume_refuses_another_run_and_starts_fresh_without_checkpoint(tiny_ratings, tmp_path: Path) -> None:
    tr, va, n_items = _matrices(tiny_ratings[0])
    mcfg = ModelConfig(n_items=n_items, hidden=(8,))
    tcfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, device="cpu", patience=0)
    fresh = fit(tr, va, mcfg, tcfg, progress=False, checkpoint=CheckpointSpec(tmp_path / "r.pt", resume=True))
    assert fresh.resumed_from == 0 and len(fresh.history) == 2
    with pytest.raises(ValueError, match="another training"):
        fit(tr, va, mcfg, TrainConfig(**{**tcfg.to_dict(), "lr": 0.02}), progress=False,
            checkpoint=CheckpointSpec(tmp_path / "r.pt", resume=True))
    longer = fit(tr, va, mcfg, TrainConfig(**{**tcfg.to_dict(), "epochs": 3}), progress=False,
                 checkpoint=CheckpointSpec(tmp_path / "r.pt", resume=True))  # more epochs: same run, continued
    assert longer.resumed_from == 2 and len(longer.history) == 3


def test_run_training_resumes_a_killed_single_process_run(tiny_ratings, tmp_path: Path, monkeypatch) -> None:
    from movierec.core.artifact import load_artifact
    from movierec.trainer import pipeline, role_jobs
    from movierec.trainer.config import get_preset

    train, test, catalog = tiny_ratings
    overrides = {"train": {"epochs": 6, "batch_size": 16, "lr": 0.01, "device": "cpu", "patience": 0}}
    out, ckpt = tmp_path / "art", tmp_path / "art.ckpt"
    real_fit = role_jobs.fit  # each role's fit (in this process: one role, jobs=1)

    def dying_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        return real_fit(*args, **kwargs, on_epoch=_kill_during(4))

    monkeypatch.setattr(role_jobs, "fit", dying_fit)
    with pytest.raises(Killed):
        pipeline.run_training(train, test, catalog, get_preset("classic"), out, overrides=overrides,
                              progress=False, checkpoint_dir=ckpt)
    monkeypatch.undo()
    assert not out.exists() and (ckpt / "rating.pt").is_file()
    pipeline.run_training(train, test, catalog, get_preset("classic"), out, overrides=overrides,
                          progress=False, checkpoint_dir=ckpt, resume=True)
    training = load_artifact(out).meta["training"]
    assert (training["resumed_from"], training["epochs_run"], training["world_size"]) == (3, 6, 1)
    assert not ckpt.exists()  # nothing left to resume once the artifact is written
