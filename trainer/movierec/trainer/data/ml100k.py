"""MovieLens 100K rebuilt in the GroupLens layout from the copy inside the recbole wheel on PyPI.

files.grouplens.org is not reachable from every build machine, PyPI is: recbole 1.2.1 ships
`dataset_example/ml-100k/ml-100k.{inter,item,user}`. The .inter rows are in u.data order, so u.data and
the mku.sh folds come out exactly as GroupLens distributes them; `UDATA_SHA256` guards that claim.
recbole is only downloaded as a file and read with zipfile, never installed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.trainer.data.download import download, log, sha256_file
from movierec.trainer.data.errors import DataError, NetworkError
from movierec.trainer.data.readers import GROUPLENS_GENRES, load_catalog, load_ratings
from movierec.trainer.data.splits import grouplens_folds, write_udata

RECBOLE_REQUIREMENT = "recbole==1.2.1"
WHEEL_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"
# sha256 of the u.data this module writes (100,000 lines, = GroupLens ml-100k u.data).
UDATA_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
UDATA_ROWS = 100_000


def pip_download_wheel(into: Path) -> Path:
    """`pip download recbole==1.2.1` (no deps, wheel only) into `into`; returns the wheel's path."""
    cmd = [
        sys.executable, "-m", "pip", "download", RECBOLE_REQUIREMENT, "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(into),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"pip download {RECBOLE_REQUIREMENT} timed out (is the package index reachable?)") from None
    wheels = sorted(into.glob("recbole-*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise NetworkError(
            f"pip could not download {RECBOLE_REQUIREMENT} (is the package index reachable?): {detail}"
        )
    return wheels[0]


def obtain_wheel(workdir: Path, source: str | None, progress: bool) -> Path:
    """The recbole wheel: from `source` (local path or URL) when given, else via pip from the index."""
    if source is None:
        if progress:
            log(f"downloading {RECBOLE_REQUIREMENT} wheel with pip (it carries MovieLens 100K)")
        return pip_download_wheel(workdir)
    if Path(source).is_file():
        return Path(source)
    target = workdir / "recbole.whl"
    download(source, target, progress=progress)
    return target


def _read_member(wheel: Path, suffix: str, workdir: Path) -> Path:
    member = f"{WHEEL_PREFIX}.{suffix}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            out = workdir / f"ml-100k.{suffix}"
            out.write_bytes(zf.read(member))
    except KeyError:
        raise DataError(f"{wheel}: has no {member}; not a recbole 1.2.1 wheel?") from None
    except zipfile.BadZipFile as exc:
        raise DataError(f"{wheel}: corrupted wheel ({exc})") from None
    return out


def write_uitem(catalog: pd.DataFrame, path: Path) -> None:
    """u.item: id|title|release date|video date|url|19 genre flags, latin-1 like the GroupLens file.

    RecBole keeps only the year, so the title is rebuilt as "Title (year)" and the release date as
    "01-Jan-year" (GroupLens' own format for year-only dates); movie 267 is "unknown" as in GroupLens.
    """
    title = catalog["title"].astype(str).replace("unkonwn", "unknown")
    year = catalog["year"]
    has_year = year.notna().to_numpy()
    year_str = year.astype("string").fillna("").to_numpy()
    full_title = np.where(has_year, title + " (" + year_str + ")", title)
    release = np.where(has_year, "01-Jan-" + pd.Series(year_str), "")
    columns = [catalog["item"].astype(str).to_numpy(), full_title, release, np.full(len(catalog), ""), np.full(len(catalog), "")]
    padded = "|" + catalog["genres"].astype(str) + "|"
    for name in GROUPLENS_GENRES:
        columns.append(np.where(padded.str.contains(f"|{name}|", regex=False), "1", "0"))
    lines = pd.DataFrame(np.column_stack(columns)).agg("|".join, axis=1)
    try:
        path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    except UnicodeEncodeError as exc:
        raise DataError(f"{path}: a title is not representable in latin-1: {exc.object[exc.start:exc.end]!r}") from None


def write_uuser(user_file: Path, path: Path) -> pd.DataFrame:
    users = pd.read_csv(user_file, sep="\t", dtype=str, keep_default_na=False)
    users.columns = [c.split(":", 1)[0] for c in users.columns]
    cols = ["user_id", "age", "gender", "occupation", "zip_code"]
    missing = [c for c in cols if c not in users.columns]
    if missing:
        raise DataError(f"{user_file}: line 1: header lacks {', '.join(missing)}")
    users[cols].to_csv(path, sep="|", header=False, index=False, lineterminator="\n")
    return users


def build_ml100k(wheel: Path, out: Path) -> None:
    """Write the GroupLens ml-100k files into the (empty, staging) folder `out`; checks u.data's sha256."""
    with tempfile.TemporaryDirectory(prefix=".recbole-", dir=out.parent) as tmp:
        work = Path(tmp)
        inter = _read_member(wheel, "inter", work)
        ratings = load_ratings(inter, "recbole")
        write_udata(ratings, out / "u.data")
        got = sha256_file(out / "u.data")
        if len(ratings) != UDATA_ROWS or got != UDATA_SHA256:
            raise DataError(f"{out / 'u.data'}: sha256 {got} ({len(ratings)} rows) differs from the known ml-100k u.data")
        write_uitem(load_catalog(_read_member(wheel, "item", work), "recbole"), out / "u.item")
        users = write_uuser(_read_member(wheel, "user", work), out / "u.user")
        (out / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GROUPLENS_GENRES)) + "\n")
        (out / "u.occupation").write_text("".join(f"{o}\n" for o in sorted(set(users["occupation"]))))
        for i, (base, test) in enumerate(grouplens_folds(ratings), start=1):
            write_udata(base, out / f"u{i}.base")
            write_udata(test, out / f"u{i}.test")


def is_complete(folder: Path, files: tuple[str, ...]) -> bool:
    return all((folder / f).is_file() for f in files) and sha256_file(folder / "u.data") == UDATA_SHA256
