"""`fetch_dataset`: get a MovieLens data set into `dest/<name>`, complete or not at all.

ml-100k is rebuilt from the recbole wheel (see ml100k.py); the others are the GroupLens zips. A complete
existing copy is left alone, so fetching is cheap to put at the start of every script.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from movierec.trainer.data import ml100k
from movierec.trainer.data.download import download, extract_zip, install_dir, log, staging_dir
from movierec.trainer.data.errors import DataError
from movierec.trainer.data.registry import DatasetSpec, get_spec


def is_complete(spec: DatasetSpec, folder: Path) -> bool:
    """Whether `folder` holds a full copy (for ml-100k also the u.data checksum)."""
    if spec.name == "ml-100k":
        return ml100k.is_complete(folder, spec.files)
    return all((folder / f).is_file() for f in spec.files)


def fetch_dataset(name: str, dest: Path, progress: bool = True, url: str | None = None) -> Path:
    """Fetch data set `name` into `dest/name` and return that folder.

    `url` overrides the download location (a mirror, or a loopback server in tests); for ml-100k it may
    name a recbole wheel (URL or local path) instead of asking pip. Progress goes to stderr when
    `progress`. Raises `NetworkError` when offline and `DataError` for a corrupt download or an
    incomplete folder already in the way (never deleted: it might be someone's data).
    """
    spec = get_spec(name)
    dest = Path(dest)
    target = dest / spec.name
    if target.exists():
        if target.is_dir() and is_complete(spec, target):
            if progress:
                log(f"{spec.name}: already present in {target}")
            return target
        raise DataError(f"{target}: exists but is not a complete copy of {spec.name}; remove it and fetch again")
    with staging_dir(dest, spec.name) as stage:
        built = stage / spec.name
        if spec.name == "ml-100k":
            built.mkdir()
            wheel = ml100k.obtain_wheel(stage, url, progress)
            if progress:
                log(f"{spec.name}: writing GroupLens layout (u.data, u.item, u1..u5 folds)")
            ml100k.build_ml100k(wheel, built)
        else:
            _fetch_zip(spec, stage, built, url, progress)
        if not is_complete(spec, built):
            missing = [f for f in spec.files if not (built / f).is_file()]
            raise DataError(f"{spec.name}: download lacks {', '.join(missing)}")
        installed = install_dir(built, target, lambda p: is_complete(spec, p))
    if progress:
        log(f"{spec.name}: {'ready in' if installed else 'already fetched concurrently into'} {target}")
    return target


def _fetch_zip(spec: DatasetSpec, stage: Path, built: Path, url: str | None, progress: bool) -> None:
    source = url or spec.url
    if source is None:
        raise DataError(f"{spec.name}: no download URL known; pass url=")
    archive = stage / f"{spec.name}.zip"
    if progress:
        log(f"{spec.name}: downloading {source}")
    # A checksum / size pinned in the registry only applies to the official archive, not to a mirror.
    pinned = url is None
    download(
        source, archive, progress=progress,
        sha256=spec.archive_sha256 if pinned else None, size=spec.archive_size if pinned else None,
    )  # fmt: skip
    unpacked = stage / "unpacked"
    unpacked.mkdir()
    extract_zip(archive, unpacked)
    archive.unlink()
    root = _find_root(spec, unpacked)
    shutil.move(str(root), str(built))


def _find_root(spec: DatasetSpec, unpacked: Path) -> Path:
    """The folder holding the data set's ratings file: the zip's top folder (ml-1m/...) or the zip root."""
    for candidate in [unpacked / spec.name, *sorted(p for p in unpacked.iterdir() if p.is_dir()), unpacked]:
        if (candidate / spec.ratings_file).is_file():
            return candidate
    raise DataError(f"{spec.name}: archive has no {spec.ratings_file}")
