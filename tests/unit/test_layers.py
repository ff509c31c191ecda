"""The layer rules in pyproject.toml's import-linter contracts hold, and they do catch a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("core", "protos", "cli", "client", "server", "trainer")
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (the [dev] extra)")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(root / t) for t in TOPS)}
    return subprocess.run([str(LINT), str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def _copy_tree(dest: Path) -> Path:
    for top in TOPS:
        shutil.copytree(ROOT / top, dest / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_server_module_importing_the_trainer_breaks_the_contract(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    errors = tree / "server/movierec/server/errors.py"
    errors.write_text(errors.read_text() + "\nimport movierec.trainer.metrics  # noqa: E402,F401\n")
    # the copy, not the editable install, is what gets analysed
    probe = subprocess.run(
        [sys.executable, "-c", "import movierec.server.errors as m; print(m.__file__)"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / t) for t in TOPS)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == str(errors)
    result = _lint(tree)
    assert result.returncode != 0
    assert "movierec.server is not allowed to import movierec.trainer" in result.stdout
    assert "movierec.server.errors -> movierec.trainer.metrics" in result.stdout
