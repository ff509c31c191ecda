"""HTTP download with progress and checks, safe zip extraction, and atomic install of a data set folder.

A data set folder either exists complete or not at all: everything is built in a hidden temp folder next
to the destination (same file system) and renamed into place, so a killed fetch leaves nothing that a
later run could mistake for a complete copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from movierec.trainer.data.errors import DataError, NetworkError

CHUNK = 1 << 20


def log(message: str) -> None:
    """Progress messages go to stderr, so stdout stays clean for output other tools parse."""
    print(message, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> str:
    """Download `url` to `target` with a tqdm bar on stderr; returns the sha256 of what was written.

    Offline / refused / DNS errors become a one-line `NetworkError`; a size or checksum mismatch a
    `DataError` (and `target` is removed: a corrupt archive must not be reused).
    """
    digest = hashlib.sha256()
    written = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else size
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=Path(url).name or url,
                disable=not progress, file=sys.stderr, leave=False,
            ) as bar:  # fmt: skip
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    written += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        target.unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        target.unlink(missing_ok=True)
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise NetworkError(f"cannot download {url}: {reason} (offline or server unreachable?)") from None
    if size is not None and written != size:
        target.unlink(missing_ok=True)
        raise DataError(f"download of {url} is {written} bytes, expected {size}")
    got = digest.hexdigest()
    if sha256 is not None and got != sha256.lower():
        target.unlink(missing_ok=True)
        raise DataError(f"download of {url} has sha256 {got}, expected {sha256}")
    return got


def extract_zip(archive: Path, into: Path) -> None:
    """Extract `archive` into `into`, refusing corrupt archives and members that escape the folder."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DataError(f"{archive}: corrupted zip (bad CRC in {bad})")
            root = into.resolve()
            for member in zf.namelist():
                dest = (into / member).resolve()
                if dest != root and root not in dest.parents:
                    raise DataError(f"{archive}: member {member!r} would extract outside the target folder")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: corrupted zip ({exc})") from None


@contextmanager
def staging_dir(dest: Path, name: str) -> Iterator[Path]:
    """A hidden temp folder inside `dest` (so the final rename stays on one file system), always removed."""
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=dest))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_dir(built: Path, target: Path, is_complete: Callable[[Path], bool]) -> bool:
    """Rename `built` to `target` atomically; False when a concurrent fetch already installed a full copy."""
    try:
        os.replace(built, target)
    except OSError:
        if target.is_dir() and is_complete(target):
            return False
        raise DataError(f"{target}: exists and is not a complete copy; remove it and fetch again") from None
    return True
