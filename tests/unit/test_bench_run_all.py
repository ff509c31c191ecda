"""`make bench` runs every benchmark in a fresh interpreter (`bench.run_all.isolated`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.run_all import isolated  # noqa: E402


def test_isolated_runs_in_another_process_and_returns_the_result() -> None:
    assert isolated(os.getpid) != os.getpid()
    assert isolated(int, "ff", base=16) == 255


def test_isolated_raises_what_the_function_raised() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        isolated(int, "not a number")
