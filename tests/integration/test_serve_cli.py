"""`movierec serve` as a real process: env settings, health, SIGTERM -> graceful stop, exit 0, few log lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from movierec.client import Client


def start_server(
    artifact: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int, str]:
    """The server process, its port and its "serving on" log line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "movierec.cli",
            "serve",
            "--artifact",
            str(artifact),
            "--host",
            "127.0.0.1",
            *args,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        m = re.search(r"serving on \S+:(\d+)", line)
        if m:
            return proc, int(m.group(1)), line
    proc.kill()
    raise AssertionError("server did not come up")


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_serve_sigterm_exits_zero(tiny_artifact: Path, loop: str) -> None:
    env = {"MOVIEREC_DEVICE": "cpu", "MOVIEREC_MAX_BATCH_SIZE": "17", "MOVIEREC_EVENT_LOOP": loop}
    proc, port, serving = start_server(tiny_artifact, "--port", "0", env=env)
    # auto runs on uvloop, which the server extra installs (not on Windows)
    assert f"; {'uvloop' if loop == 'auto' else 'asyncio'} loop)" in serving, serving
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as c:
            c.wait_until_serving(30)
            info = c.model_info()
            assert info.limits.max_batch_size == 17  # from the environment
            assert info.device == "cpu"
            user = int(c.recommend_for_ratings({int(c.movies().movie_ids[0]): 4.0}, k=2)[0].movie_ids[0])
            assert user > 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = [x for x in err.splitlines() if "movierec" in x]
    assert any("stopping" in x for x in lines) and any("stopped" in x for x in lines)
    assert len(lines) <= 4, lines  # one line per start/ready/stop, none per request


def test_serve_bad_artifact_is_one_line_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(tmp_path / "nope"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "artifact not found" in out.stderr and "Traceback" not in out.stderr


def test_serve_refuses_an_unknown_event_loop(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(tmp_path), "--event-loop", "trio"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "event_loop='trio'" in out.stderr and "Traceback" not in out.stderr
