"""The server's event-loop choice (`--event-loop`): what auto resolves to, refusals, and runs on each loop."""

from __future__ import annotations

import asyncio

import pytest

from movierec.server import event_loop


def test_auto_prefers_uvloop_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_loop, "uvloop_available", lambda: True)
    assert event_loop.resolve("auto") == "uvloop"
    monkeypatch.setattr(event_loop, "uvloop_available", lambda: False)
    assert event_loop.resolve("auto") == "asyncio"
    assert event_loop.resolve("asyncio") == "asyncio"


def test_refusals_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="auto, uvloop, asyncio"):
        event_loop.resolve("trio")
    monkeypatch.setattr(event_loop, "uvloop_available", lambda: False)
    with pytest.raises(ValueError, match="pip install uvloop"):
        event_loop.resolve("uvloop")


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_run_uses_the_loop_and_cleans_up(choice: str) -> None:
    if choice == "uvloop":
        pytest.importorskip("uvloop")
    cancelled = asyncio.Event()  # set from inside the loop; read after it closed
    state: dict[str, object] = {}

    async def forever(started: asyncio.Event) -> None:
        started.set()
        try:
            await asyncio.Future()
        finally:
            cancelled.set()

    async def main() -> int:
        state["loop"] = event_loop.running_loop_name()
        started = asyncio.Event()
        state["task"] = asyncio.get_running_loop().create_task(forever(started))
        await started.wait()  # it is running, and still pending when main returns
        return 42

    assert event_loop.run(main(), choice) == 42
    assert state["loop"] == choice
    assert cancelled.is_set()  # a task still pending at the end was cancelled, as asyncio.run does
    task = state["task"]
    assert isinstance(task, asyncio.Task) and task.cancelled()
