"""A command whose optional extra is missing says in one line which extra to install and exits 2.

Each case runs the CLI in a fresh interpreter where the module is blocked (`sys.modules[name] = None`, so
`import name` raises ModuleNotFoundError as it does when the package is not installed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from movierec.cli import missing_extra

RUN = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "from movierec.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def run_without(blocked: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, blocked, *argv], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "art"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        ("torch", ["evaluate", "--artifact", "{art}", "--test", "{art}/t.tsv"], "train"),
        ("torch", ["predict", "--artifact", "{art}", "--pairs", "{art}/p.tsv", "--out", "{art}/o.tsv"], "train"),
        ("torch", ["recommend", "--artifact", "{art}", "--user", "1"], "train"),
        ("torch", ["train", "--train", "{art}/r.tsv", "--out", "{art}/out"], "train"),
        ("torch", ["serve", "--artifact", "{art}"], "server"),
        ("grpc_reflection", ["serve", "--artifact", "{art}"], "server"),
        ("ray", ["score-all", "--engine", "ray", "--artifact", "{art}", "--out", "{art}/o"], "ray"),
        ("torch,ray", ["score-all", "--engine", "ray", "--artifact", "{art}", "--out", "{art}/o"], "ray"),
    ],
)
def test_missing_extra_is_one_line(blocked: str, argv: list[str], extra: str, artifact_dir: Path) -> None:
    proc = run_without(blocked, *(a.format(art=artifact_dir) for a in argv))
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"pip install 'movierec[{extra}]'" in err and f"movierec {argv[0]}: error:" in err


def test_client_commands_need_no_extra() -> None:
    """Without torch, ray and the server extras the client commands still run (and fail on the network)."""
    proc = run_without("torch,ray,grpc_reflection", "health", "--target", "127.0.0.1:1", "--timeout", "0.5")
    assert proc.returncode == 2 and "movierec[" not in proc.stderr, proc.stderr


def test_missing_extra_maps_modules() -> None:
    def missing(name: str) -> ModuleNotFoundError:
        return ModuleNotFoundError(f"No module named {name!r}", name=name)

    assert missing_extra(missing("torch.nn"), None) == "train"
    assert missing_extra(missing("torch"), "server") == "server"
    assert missing_extra(missing("torch"), "ray") == "ray"
    assert missing_extra(missing("grpc_reflection.v1alpha"), None) == "server"
    assert missing_extra(missing("ray.data"), "server") == "ray"
    assert missing_extra(missing("matplotlib"), None) == "train"
    assert missing_extra(missing("pandas"), "train") is None  # a base dependency: a broken install, re-raised
