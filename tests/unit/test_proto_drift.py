"""The committed generated code in protos/movierec/v1 must match a fresh `make proto` (drift check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date() -> None:
    pytest.importorskip("grpc_tools")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "protogen.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_generated_imports_are_absolute() -> None:
    text = (ROOT / "protos/movierec/v1/recommender_service_pb2.py").read_text()
    assert "from movierec.v1 import types_pb2" in text


def test_every_message_field_is_documented() -> None:
    """Each field and message in the .proto has a comment line right above it."""
    for proto in (ROOT / "protos/movierec/v1").glob("*.proto"):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            is_decl = s.startswith(("message ", "rpc ", "service ")) or (
                s.endswith(";") and "=" in s and not s.startswith(("syntax", "//", "option"))
            )
            if is_decl:
                assert lines[i - 1].strip().startswith("//"), f"{proto.name}:{i + 1} undocumented: {s}"
