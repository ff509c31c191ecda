"""Which asyncio event loop a server process runs on: uvloop when installed (the default), or the standard one.

uvloop is a drop-in asyncio loop written in Cython over libuv. The server's per-call work is largely event-loop
machinery (grpc.aio's completion callbacks, the batcher's futures, the hand-off to the model thread and back),
and on uvloop that machinery costs less (the README's "Performance" gives the measured gain). grpc.aio needs nothing of the loop beyond the public
asyncio API (readers on a socket, call_soon_threadsafe, executors), which uvloop implements.

`--event-loop asyncio` keeps the standard loop (for debugging with asyncio's debug mode, or where uvloop is not
available: it is not built for Windows); `uvloop` insists on it and fails when it is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: str) -> str:
    """The loop `choice` means here: "uvloop" or "asyncio". ValueError for an unknown choice or an explicit
    "uvloop" that is not installed."""
    if choice not in CHOICES:
        raise ValueError(f"event_loop={choice!r}; use one of {', '.join(CHOICES)}")
    if choice == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    if choice == "uvloop" and not uvloop_available():
        raise ValueError("event_loop='uvloop' but uvloop is not installed (pip install uvloop, or --event-loop asyncio)")
    return choice


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new loop of the kind `choice` resolves to."""
    if resolve(choice) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """`asyncio.run(main)` on the loop `choice` resolves to (same shutdown: pending tasks cancelled, async
    generators and the default executor closed)."""
    factory = loop_factory(choice)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()  # Python 3.10: no Runner; asyncio.run's steps by hand
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def running_loop_name() -> str:
    """ "uvloop" or "asyncio": the loop running now (for the startup log and /metrics' build info)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
