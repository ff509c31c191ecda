"""Helpers shared by the benchmarks: start a server subprocess, read a process's memory from /proc."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def proc_kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM (peak RSS) of a live process in KiB (Linux)."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def start_server(
    cmd: list[str], pattern: str = r"serving on \S+:(\d+)", log: list[str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start a server subprocess; wait for the log line with its port; keep draining its stderr (into `log`
    when given: the last 200 lines)."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(pattern, line)
        if m:
            threading.Thread(target=_drain, args=(proc, log), daemon=True).start()
            return proc, int(m.group(1))
    raise SystemExit(f"server {cmd} exited with status {proc.wait()}")


def _drain(proc: subprocess.Popen[str], log: list[str] | None) -> None:
    for line in proc.stderr or ():
        if log is not None:
            log.append(line)
            del log[:-200]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def movierec_serve(artifact: Path, device: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(artifact), "--host", "127.0.0.1",
            "--port", "0", "--device", device, *extra]  # fmt: skip


def wait_peak_kib(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], every_s: float = 0.02
) -> tuple[int, int]:
    """Wait for a child; (exit status, its peak RSS in KiB), polling VmHWM until it exits.

    (wait4's ru_maxrss is no good here: Linux carries the parent's peak RSS over fork + exec.)
    """
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            peak = max(peak, proc_kib(proc.pid, "VmHWM"))
        time.sleep(every_s)
    return int(proc.returncode), peak


def capacity_args(doc: str | None, seconds: float, json_path: str) -> argparse.ArgumentParser:
    """The options the server-capacity benchmarks share: --artifact, --repeats, --seconds, --json."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=seconds)
    p.add_argument("--json", type=Path, default=Path(json_path))
    return p


def write_json(path: Path, res: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    print(f"wrote {path}")
