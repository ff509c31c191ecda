"""The web page ships inside the package: a wheel built from the tree holds server/movierec/server/web/*."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_page(tmp_path: Path) -> None:
    src = tmp_path / "src"
    archive = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
                             check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    for rel in archive:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = sorted(p.name for p in (ROOT / "server/movierec/server/web").iterdir())
    assert web and {f"movierec/server/web/{n}" for n in web} <= names, sorted(n for n in names if "web" in n)
