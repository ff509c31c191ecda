"""Memory up front: a stage that would not fit is refused before it allocates, in one line naming the stage,
what it needs, what is available and the option that reduces it (a fake limit stands in for a small machine)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from movierec.cli import main
from movierec.trainer import memory
from movierec.trainer.config import get_preset, model_for_shape
from movierec.trainer.memory import GIB, MemoryBudgetError, Shape, check, parse_size, plan
from movierec.trainer.pipeline import resolve_roles, run_training

ML25M = Shape(162_541, 59_047, 25_000_095)
ML1M = Shape(6_040, 3_706, 1_000_209)


def test_parse_size() -> None:
    assert parse_size("16G") == 16 * GIB
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * GIB)
    assert parse_size("1000") == 1000
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size("lots")


def test_env_limit_caps_what_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.ENV_LIMIT, "")  # empty: no cap
    free = memory.available_bytes()
    assert free > 0
    monkeypatch.setenv(memory.ENV_LIMIT, "1K")  # below this process's RSS: nothing left
    assert memory.available_bytes() == 0
    monkeypatch.setenv(memory.ENV_LIMIT, str(10**15))
    assert memory.available_bytes() <= free + 64 * 1024**2


def test_check_message_is_one_line() -> None:
    with pytest.raises(MemoryBudgetError) as info:
        check("the ranking model (ease)", 30 * GIB, "lower max_items", have=2 * GIB)
    msg = str(info.value)
    assert "\n" not in msg
    assert "the ranking model (ease)" in msg and "30.0 GiB" in msg and "2.0 GiB is available" in msg
    assert msg.endswith("lower max_items")
    check("small", GIB, "x", have=2 * GIB)  # fits: no error


def _roles_at(shape: Shape) -> dict[str, Any]:
    """The default preset's roles as the pipeline trains them at `shape` (size tiers applied, members left out)."""
    roles = resolve_roles(get_preset("best"), None)
    return {r: (model_for_shape(m, t, shape.n_users, shape.n_items)[0], t) for r, (m, t) in roles.items()}


def test_default_preset_plan_at_ml25m() -> None:
    """At the ml-25m shape every stage of the default preset, as trained at that size, is estimated under a
    16 GiB budget (pruned EASE and kNN-baseline, BPMF without its implicit part, the dense-layer members left
    out); with the kNN-baseline unpruned (dense movies x movies) the plan refuses that member by name, before
    any member trains. BPMF's implicit part (a dense users x movies product) is counted where it is kept."""
    roles = _roles_at(ML25M)
    stages = {s.name: s for s in plan(roles, ML25M)}
    assert max(s.need for s in stages.values()) < 12 * GIB
    assert stages["the ranking model (ease)"].need < 6 * GIB
    model, train = roles["rating"]
    assert [m["model"]["kind"] for m in model.extra["members"]] == ["knn-baseline", "bpmf"]
    members = [dict(m) for m in model.extra["members"]]
    members[0] = {**members[0], "model": {**members[0]["model"], "extra": {**members[0]["model"]["extra"], "max_items": 0}}}
    roles["rating"] = (dataclasses.replace(model, extra={**model.extra, "members": members}), train)
    unpruned = plan(roles, ML25M)
    assert unpruned[0].name == "the rating model's member 1 (knn-baseline)" and unpruned[0].need > 100 * GIB
    with pytest.raises(MemoryBudgetError, match=r"member 1 \(knn-baseline\).*max_items"):
        memory.check_plan(unpruned)
    raw = {s.name: s for s in plan(resolve_roles(get_preset("best"), None), ML25M)}  # no size tiers
    assert raw["the rating model's member 4 (bpmf)"].need > 50 * GIB
    # every stage of the default preset fits the ml-1m shape in 4 GiB
    assert max(s.need for s in plan(_roles_at(ML1M), ML1M)) < 4 * GIB


def test_iautorec_estimate_follows_the_large_data_switch() -> None:
    model, train = resolve_roles(get_preset("iautorec"), None)["rating"]
    small = memory.stage_bytes(model, train, Shape(943, 1_682, 90_000))[0]
    large = memory.stage_bytes(model, train, ML25M)[0]
    dense_25m = 4 * ML25M.n_users * ML25M.n_items * 4  # what full batch would hold
    assert small < GIB and large < dense_25m / 10


def test_run_training_refuses_before_training(tiny_ratings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, test, _ = tiny_ratings
    monkeypatch.setenv(memory.ENV_LIMIT, "1K")
    with pytest.raises(MemoryBudgetError, match=r"not enough memory for the ranking model \(ease\)"):
        run_training(train, test, None, get_preset("ease"), tmp_path / "art", progress=False)
    assert not (tmp_path / "art").exists()


def test_cli_one_line_exit_2(tiny_ratings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    # set (empty: no cap) so that monkeypatch removes what --memory-limit puts into os.environ afterwards
    monkeypatch.setenv(memory.ENV_LIMIT, "")
    train, _, _ = tiny_ratings
    path = tmp_path / "train.csv"
    pd.DataFrame({"userId": train["user"], "movieId": train["item"], "rating": train["rating"],
                  "timestamp": train["timestamp"]}).to_csv(path, index=False)
    rc = main(["train", "--train", str(path), "--preset", "ease", "--memory-limit", "1K", "--out",
               str(tmp_path / "art"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "not enough memory for the ranking model (ease)" in err[0] and "max_items" in err[0]
    monkeypatch.setenv(memory.ENV_LIMIT, "")
    assert main(["train", "--train", str(path), "--memory-limit", "lots", "--out", str(tmp_path / "b")]) == 2
    assert "not a memory size" in capsys.readouterr().err
