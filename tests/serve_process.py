"""`movierec serve` as a child process for the tests that need a real one (workers, the HTTP face, the browser
test): its stderr read line by line on a thread, patterns found in it, the processes listening on a port,
and a stop that never leaves a process behind. Importable from every test folder (tests/ is on the path of
pytest's rootdir conftest)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

import psutil
from waiting import WAIT_S, wait_for


class ServeProcess:
    """`python -m movierec.cli serve *args` in a session of its own (so a stop reaches its workers too)."""

    def __init__(self, args: Sequence[str], ready: str, what: str, wait_s: float = WAIT_S) -> None:
        """Start it and wait until a stderr line matches `ready` (or the process ends: then fail with its log)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "movierec.cli", "serve", *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_for(lambda: self.find(ready) or self.proc.poll() is not None, what, wait_s)
        assert self.proc.poll() is None, f"{what}, but the server exited:\n" + "".join(self.lines[-30:])

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def find(self, pattern: str) -> str | None:
        """The first group of the first stderr line so far that matches `pattern` (None if none does)."""
        for line in list(self.lines):
            if m := re.search(pattern, line):
                return m.group(1)
        return None

    def listeners(self, port: int) -> list[psutil.Process]:
        """The child processes listening on `port` (the workers serving it)."""
        out = []
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                       for c in child.net_connections("tcp")):  # fmt: skip
                    out.append(child)
        return out

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send `sig` to the whole session and wait; SIGKILL if it has not ended within 30 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
