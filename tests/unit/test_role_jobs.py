"""A preset's roles trained side by side in worker processes (`movierec.trainer.role_jobs`): the same models
as one at a time, the memory gate, failures that stop every worker, and a worker that dies named."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
from waiting import wait_for

from movierec.core.artifact import load_artifact
from movierec.core.sparse import IdMap
from movierec.trainer import memory, role_jobs
from movierec.trainer.config import ModelConfig, TrainConfig
from movierec.trainer.pipeline import ratings_matrix, run_training
from movierec.trainer.role_jobs import RoleJob, auto_jobs, fits_beside, role_need, run_role_jobs


def _workers() -> list[psutil.Process]:
    """This process's live worker processes (multiprocessing's spawn children)."""
    out = []
    for p in psutil.Process().children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and any("spawn_main" in a for a in p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _job(tiny_ratings: Any, role: str, epochs: int, **train: Any) -> RoleJob:
    df = tiny_ratings[0]
    users, items = IdMap.from_ids(df["user"]), IdMap.from_ids(df["item"])
    full = ratings_matrix(df, users, items)
    valid = ratings_matrix(df.iloc[::10], users, items)
    model = ModelConfig(n_items=len(items), hidden=(8,))
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=0.01, device="cpu", patience=0, seed=3, **train)
    return RoleJob(role, model, cfg, full, valid, full, None, False, None, threads=1)


def test_roles_side_by_side_train_the_same_models_as_one_at_a_time(
    tiny_ratings, tiny_profiles, tiny_cold_preset, tmp_path: Path, capfd
) -> None:
    train, test, catalog = tiny_ratings
    preset = tiny_cold_preset()
    one = run_training(train, test, catalog, preset, tmp_path / "one", progress=False, profiles=tiny_profiles)
    capfd.readouterr()
    two = run_training(train, test, catalog, preset, tmp_path / "two", progress=True, profiles=tiny_profiles,
                       jobs=2)  # fmt: skip
    err = capfd.readouterr().err
    # every role went to a worker process (the first shows its bars, the others say so when they finish)
    for role in ("rating", "ranking", "cold-rating", "cold-ranking"):
        assert f"training the {role} model" in err and f"the {role} model is trained" in err
    a, b = load_artifact(tmp_path / "one"), load_artifact(tmp_path / "two")
    assert set(a.models) == set(b.models) == {"rating", "ranking", "cold-rating", "cold-ranking"}
    for role, entry in a.models.items():
        assert entry.config == b.models[role].config, role  # the hyperparameters chosen on validation too
        assert entry.state.keys() == b.models[role].state.keys()
        for key, value in entry.state.items():
            assert torch.equal(value, b.models[role].state[key]), (role, key)
    assert one.metrics.keys() == two.metrics.keys()
    for key, value in one.metrics.items():
        assert value == two.metrics[key] or (np.isnan(value) and np.isnan(two.metrics[key])), key
    # the main role's fit comes back with its history, and its model rebuilt from the worker's state
    assert [h.valid_rmse for h in two.fit.history] == [h.valid_rmse for h in one.fit.history]
    for key, value in one.fit.model.state_dict().items():
        assert torch.equal(value, two.fit.model.state_dict()[key]), key
    assert not _workers()


def test_a_role_that_does_not_fit_beside_the_running_ones_waits_and_the_next_that_fits_goes_first(
    tiny_ratings,
) -> None:
    jobs = [_job(tiny_ratings, "rating", 2), _job(tiny_ratings, "ranking", 2), _job(tiny_ratings, "cold", 2)]
    needs = {"rating": 300, "ranking": 300, "cold": 100}  # rating + ranking > MEMORY_SHARE x 1000
    events: list[str] = []
    done = run_role_jobs(jobs, 2, needs, 1000, note=events.append)
    assert set(done) == {"rating", "ranking", "cold"}
    running: set[str] = set()
    for event in events:  # "training the X model ..." / "the X model is trained ..."
        role = event.split(" model")[0].split()[-1]
        (running.add if event.startswith("training") else running.discard)(role)
        assert not {"rating", "ranking"} <= running, events
    starts = [e.split(" model")[0].split()[-1] for e in events if e.startswith("training")]
    assert starts == ["rating", "cold", "ranking"]  # cold fitted beside rating; ranking waited
    events.clear()
    run_role_jobs(jobs[:2], 2, {"rating": 200, "ranking": 200}, 1000, note=events.append)  # 400 fits
    assert [e.split(" model")[0] for e in events][:2] == ["training the rating", "training the ranking"]


def test_no_two_roles_fitting_together_train_in_this_process(tiny_ratings) -> None:
    jobs = [_job(tiny_ratings, "rating", 2), _job(tiny_ratings, "ranking", 2)]
    events: list[str] = []
    done = run_role_jobs(jobs, 2, {"rating": 300, "ranking": 300}, 1000, note=events.append)
    assert set(done) == {"rating", "ranking"} and not events  # no worker process was started


def test_a_failing_role_stops_the_others_and_raises_its_own_error(tiny_ratings) -> None:
    long = _job(tiny_ratings, "rating", 10**7)  # would run for hours: it must be terminated
    bad = dataclasses.replace(_job(tiny_ratings, "ranking", 2), train_config=TrainConfig(epochs=2, lr=-1.0))
    started: list[str] = []
    with pytest.raises(ValueError, match="lr must be > 0"):
        run_role_jobs([long, bad], 2, {"rating": 1, "ranking": 1}, 10**12, note=started.append)
    assert len([s for s in started if s.startswith("training the")]) == 2
    assert not _workers(), "a worker was left running"


def test_a_worker_that_dies_is_named_and_nothing_is_left_running(tiny_ratings) -> None:
    jobs = [_job(tiny_ratings, "rating", 10**7), _job(tiny_ratings, "ranking", 10**7)]
    killed: list[int] = []

    def kill_first(line: str) -> None:
        if not killed and line.startswith("training the rating"):
            wait_for(lambda: len(_workers()) == 1, "the rating model's worker process")
            victim = _workers()[0]
            killed.append(victim.pid)
            victim.kill()

    with pytest.raises(RuntimeError, match=r"the rating model: its worker process died \(exit status -9"):
        run_role_jobs(jobs, 2, {"rating": 1, "ranking": 1}, 10**12, note=kill_first)
    assert killed
    assert not _workers(), "the other worker was left running"


def test_auto_jobs_one_per_threads_cpus_and_one_where_side_by_side_does_not_pay() -> None:
    big = role_jobs.MIN_PARALLEL_RATINGS
    assert auto_jobs(4, threads=1, cpus=2, on_cuda=False, world_size=1, n_ratings=big) == 2
    assert auto_jobs(4, threads=1, cpus=16, on_cuda=False, world_size=1, n_ratings=big) == 4  # at most the roles
    assert auto_jobs(4, threads=4, cpus=16, on_cuda=False, world_size=1, n_ratings=big) == 4
    assert auto_jobs(4, threads=2, cpus=2, on_cuda=False, world_size=1, n_ratings=big) == 1
    assert auto_jobs(4, threads=1, cpus=2, on_cuda=True, world_size=1, n_ratings=big) == 1
    assert auto_jobs(4, threads=1, cpus=2, on_cuda=False, world_size=2, n_ratings=big) == 1
    assert auto_jobs(4, threads=1, cpus=2, on_cuda=False, world_size=1, n_ratings=big - 1) == 1


def test_input_bytes_bounds_what_a_worker_receives(tiny_ratings) -> None:
    from movierec.trainer.data import holdout_mask
    from movierec.trainer.fit.side import SideData

    df = tiny_ratings[0]
    users, items = IdMap.from_ids(df["user"]), IdMap.from_ids(df["item"])
    mask = holdout_mask(df["user"].to_numpy(), 0.1, 0)
    full, train, valid = (ratings_matrix(d, users, items) for d in (df, df[~mask], df[mask]))

    def size(m: Any) -> int:
        return m.indptr.nbytes + m.indices.nbytes + m.values.nbytes

    assert role_jobs.input_bytes(full, None) == 2 * size(full) + full.indptr.nbytes
    assert size(train) + size(valid) + size(full) <= role_jobs.input_bytes(full, None)  # what a worker gets
    side = SideData(np.zeros((5, 3), np.float32), np.zeros((7, 2), np.float32))
    assert role_jobs.input_bytes(full, side) == 3 * size(full) + full.indptr.nbytes + 4 * (15 + 14)


def test_the_memory_gate() -> None:
    stages = [memory.Stage("a", 100, "", "rating"), memory.Stage("b", 300, "", "rating")]
    # the largest stage, doubled, a process, and the worker's copy of its inputs
    assert role_need(stages, 1234) == 600 + role_jobs.PROCESS_BYTES + 1234
    assert fits_beside([], 10**15, 1)  # alone, any role may run (the memory check refuses what cannot fit)
    assert fits_beside([100], 400, 1000)
    assert not fits_beside([100], 401, 1000)


def test_plan_parallel_refuses_a_bad_count() -> None:
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        role_jobs.plan_parallel(0, 4, 1, False, 10**6)
    assert role_jobs.plan_parallel(8, 3, 1, False, 10) == 3  # asked: never more than the roles, any size


def test_train_jobs_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`movierec train --jobs N|auto` reaches run_training(jobs=); anything else is refused in one line."""
    import movierec.trainer.pipeline as pipeline
    from movierec.cli import main

    seen: list[Any] = []

    def fake_run_training(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["jobs"])
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "run_training", fake_run_training)
    train = tmp_path / "train.data"
    train.write_text("1\t1\t5\t1\n2\t1\t4\t2\n3\t2\t3\t3\n")
    base = ["train", "--train", str(train), "--preset", "popular", "--out", str(tmp_path / "art"), "--quiet"]
    for extra, want in (([], None), (["--jobs", "auto"], None), (["--jobs", "3"], 3)):
        with pytest.raises(SystemExit):
            main([*base, *extra])
        assert seen.pop() == want
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as exc:
            main([*base, "--jobs", bad])
        assert exc.value.code == 2
        assert f"--jobs takes a number >= 1 or auto, got '{bad}'" in capsys.readouterr().err
    assert not seen


def test_python_dash_m_movierec_train_with_jobs(tiny_ratings, tmp_path: Path) -> None:
    """The spawned workers re-import the parent's main module: `python -m movierec.cli train --jobs 2` (and so
    the `movierec` script) must train, not start another CLI run in every worker."""
    import subprocess
    import sys

    train = tiny_ratings[0]
    data = tmp_path / "train.data"
    train[["user", "item", "rating", "timestamp"]].astype({"rating": int}).to_csv(data, sep="\t", header=False,
                                                                                 index=False)  # fmt: skip
    out = tmp_path / "art"
    res = subprocess.run([sys.executable, "-m", "movierec.cli", "train", "--train", str(data), "--preset", "best",
                          "--jobs", "2", "--out", str(out)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    for role in ("rating", "ranking", "cold-rating", "cold-ranking"):
        assert f"the {role} model is trained" in res.stderr
    assert set(load_artifact(out).models) == {"rating", "ranking", "cold-rating", "cold-ranking"}
