"""Models that change while serving: hot swap under load, refusal of bad artifacts, kill -9 during a write."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from movierec.client import Client, MovieRecError, RecommendQuery


@pytest.fixture(scope="module")
def second_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_ratings: Any) -> Path:
    """Same data and catalog as tiny_artifact, trained differently: a new version of the same model."""
    from movierec.trainer.config import get_preset
    from movierec.trainer.pipeline import run_training

    train, test, catalog = tiny_ratings
    out = tmp_path_factory.mktemp("v2") / "tiny2"
    run_training(
        train, test, catalog, get_preset("classic"), out,
        overrides={"train": {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu"}},
        dataset="synthetic-tiny", progress=False,
    )  # fmt: skip
    return out


def publish(src: Path, versions: Path, name: str) -> Path:
    """Copy an artifact into a versions folder the way a deployment should: complete, then renamed in."""
    tmp = versions / f".{name}.incoming"
    shutil.copytree(src, tmp)
    os.replace(tmp, versions / name)
    os.utime(versions / name / "manifest.json")  # newest
    return versions / name


def manager_for(srv: Any, versions: Path) -> Any:
    from movierec.server.model_manager import ModelManager

    m = ModelManager(versions, device="cpu")
    m.attach(srv.server.engine)
    return m


def test_swap_under_continuous_load_fails_no_call(
    make_server: Any, scorer: Any, tiny_artifact: Path, second_artifact: Path, tmp_path: Path
) -> None:
    versions = tmp_path / "models"
    versions.mkdir()
    publish(tiny_artifact, versions, "v1")
    srv = make_server(max_delay_ms=1)
    manager = manager_for(srv, versions)
    v1 = scorer.info.version
    users = [int(u) for u in scorer.users.raw[:5]]
    movies = [int(m) for m in scorer.items.raw[:3]]
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []
    calls = [0]
    lock = threading.Lock()

    def load(kind: int) -> None:
        with Client(srv.target, timeout=10) as c:
            while not stop.is_set():
                try:
                    if kind == 0:
                        c.recommend(users, k=5)
                    elif kind == 1:
                        c.recommend_for_ratings({movies[0]: 5.0, movies[1]: 1.0}, k=5)
                    else:
                        res = list(c.stream([RecommendQuery(users, k=3, request_id=str(i)) for i in range(4)]))
                        assert all(r.ok for r in res), res
                    version = c.model_info().version
                    with lock:
                        calls[0] += 1
                        seen.append(version)
                except (MovieRecError, AssertionError) as exc:
                    with lock:
                        failures.append(repr(exc))

    threads = [threading.Thread(target=load, args=(i % 3,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    publish(second_artifact, versions, "v2")
    assert srv.run(manager.reload()).result(60) is True
    v2 = srv.server.engine.version
    time.sleep(0.7)
    stop.set()
    for t in threads:
        t.join(30)
    print(f"\nSWAP: {calls[0]} call groups under load across the swap {v1} -> {v2}, {len(failures)} failed")
    assert failures == []
    assert v1 != v2 and seen[0] == v1 and seen[-1] == v2 and set(seen) == {v1, v2}
    with Client(srv.target) as c:
        assert c.recommend(users[0], k=3)  # and responses now carry v2
        assert c.model_info().version == v2


def test_call_in_flight_finishes_on_the_model_it_started_with(
    make_server: Any, scorer: Any, gated: Any, tiny_artifact: Path, second_artifact: Path, tmp_path: Path
) -> None:
    from movierec.core.scoring import Scorer

    versions = tmp_path / "models"
    versions.mkdir()
    publish(tiny_artifact, versions, "v1")
    old = gated  # holds the call in the old model's step until the swap is done
    srv = make_server(old, max_delay_ms=0)
    manager = manager_for(srv, versions)
    user = int(scorer.users.raw[0])
    out: dict[str, Any] = {}

    def slow_call() -> None:
        with Client(srv.target, timeout=gated.WAIT_S) as c:
            out["recs"] = c.recommend(user, k=5)

    t = threading.Thread(target=slow_call)
    t.start()
    assert gated.entered.wait(gated.WAIT_S), "the call never reached the old model"  # in its step now
    publish(second_artifact, versions, "v2")
    assert srv.run(manager.reload()).result(60) is True
    gated.release.set()
    t.join(gated.WAIT_S)
    recs = out["recs"]
    assert recs.model_version == scorer.info.version  # answered by the model it started on
    assert old.rows_scored == [1]
    expected, _ = scorer.recommend_users([0], 5)
    assert recs[0].movie_ids.tolist() == scorer.items.raw[expected[0]].tolist()
    with Client(srv.target) as c:
        new = c.recommend(user, k=5)
    assert new.model_version == Scorer.load(second_artifact, "cpu").info.version
    assert old.rows_scored == [1]  # the new call did not touch the old model


def _corrupt_copies(src: Path, root: Path, tiny_ratings: Any) -> dict[str, Path]:
    from movierec.trainer.config import get_preset
    from movierec.trainer.pipeline import run_training
    from movierec.trainer.synthetic import synthetic_catalog, synthetic_ratings

    out = {}
    bad = root / "bad-checksum"
    shutil.copytree(src, bad)
    weights = next(bad.glob("model-*.pt"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    out["checksum"] = bad

    trunc = root / "truncated"
    shutil.copytree(src, trunc)
    weights = next(trunc.glob("model-*.pt"))
    weights.write_bytes(weights.read_bytes()[:100])
    manifest = json.loads((trunc / "manifest.json").read_text())
    import hashlib

    manifest["files"][weights.name] = hashlib.sha256(weights.read_bytes()).hexdigest()  # checksum "fixed"
    (trunc / "manifest.json").write_text(json.dumps(manifest))
    out["truncated"] = trunc

    df = synthetic_ratings(n_users=50, n_items=60, n_ratings=800, seed=3)
    test = df.sample(frac=0.2, random_state=3)
    run_training(
        df.drop(test.index), test, synthetic_catalog(60, seed=3), get_preset("classic"), root / "other-catalog",
        overrides={"train": {"epochs": 1, "batch_size": 16, "device": "cpu"}}, dataset="other", progress=False,
    )  # fmt: skip
    out["catalog"] = root / "other-catalog"
    return out


def test_corrupt_or_incompatible_artifact_is_refused_and_old_keeps_serving(
    make_server: Any, scorer: Any, tiny_artifact: Path, second_artifact: Path, tmp_path: Path,
    tiny_ratings: Any, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.WARNING, logger="movierec.server")
    bad = _corrupt_copies(second_artifact, tmp_path / "bad", tiny_ratings)
    versions = tmp_path / "models"
    versions.mkdir()
    publish(tiny_artifact, versions, "v1")
    srv = make_server()
    manager = manager_for(srv, versions)
    v1 = scorer.info.version
    user = int(scorer.users.raw[0])
    reasons = {"checksum": "checksum mismatch", "truncated": "cannot read artifact", "catalog": "catalog size 60"}
    for i, (what, path) in enumerate(bad.items()):
        publish(path, versions, f"v{i + 2}-{what}")
        assert srv.run(manager.reload()).result(60) is False, what
        assert reasons[what] in manager.stats.last_error, manager.stats.last_error
        assert reasons[what] in caplog.text and "refused" in caplog.text
        with Client(srv.target) as c:
            assert c.recommend(user, k=3).model_version == v1
        assert srv.run(manager.reload()).result(60) is False  # not retried until its files change
    assert manager.stats.refused == 3 and manager.stats.swaps == 0
    publish(second_artifact, versions, "v9-good")  # a good one after bad ones still goes in
    assert srv.run(manager.reload()).result(60) is True


KILL_CHILD = r"""
import sys
from movierec.core.artifact import load_artifact, save_artifact
a, b = load_artifact(sys.argv[1]), load_artifact(sys.argv[2])
print("ready", flush=True)
i = 0
while True:
    save_artifact(a if i % 2 else b, sys.argv[3])
    i += 1
"""


def test_kill_9_during_artifact_write_leaves_a_loadable_artifact(
    tiny_artifact: Path, second_artifact: Path, tmp_path: Path
) -> None:
    """SIGKILL a process that rewrites the artifact in a loop, at random moments: every time, what is at
    the path (after load_artifact's recovery) is one complete version, never a torn one."""
    import random

    from movierec.core.artifact import load_artifact

    target = tmp_path / "served"
    shutil.copytree(tiny_artifact, target)
    versions = {load_artifact(tiny_artifact).version, load_artifact(second_artifact).version}
    rounds = int(os.environ.get("MOVIEREC_KILL_ROUNDS", "2"))
    rng = random.Random(11)
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_CHILD, str(tiny_artifact), str(second_artifact), str(target)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert load_artifact(target).version in versions  # verifies every checksum
