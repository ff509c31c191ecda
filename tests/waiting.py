"""Waiting on a condition, never on the clock: the one polling helper the tests share (tests/ is on the path
of pytest's rootdir conftest, so every test folder imports it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

WAIT_S = 120.0  # generous: a wait ends as soon as its condition holds; this only bounds a broken test


def wait_for(condition: Callable[[], object], what: str, wait_s: float = WAIT_S) -> None:
    """Poll `condition` until it is true; fail naming `what` if it is still false after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {wait_s:.0f} s"
        time.sleep(0.01)


async def wait_for_async(condition: Callable[[], Awaitable[object]], what: str, wait_s: float = WAIT_S) -> None:
    """`wait_for` for a condition that is a coroutine (an RPC): awaited until true, within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while not await condition():
        assert time.monotonic() < deadline, f"{what} within {wait_s:.0f} s"
        await asyncio.sleep(0.01)
