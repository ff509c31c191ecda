"""The package list in pyproject.toml must name every package folder, or wheels silently lose code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    dirs = config["package-dir"]
    found: set[str] = set()
    for top in ("core", "protos", "cli", "client", "server", "trainer"):
        for init in (ROOT / top / "movierec").rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join(rel.parts))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"
    for name in listed:
        root = name.split(".")[:2]
        assert ".".join(root) in dirs, f"{name} has no package-dir root"


def test_client_sdk_does_not_import_torch() -> None:
    code = "import sys, movierec.client, movierec.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
