"""`movierec data ...`: fetch MovieLens data sets, materialize splits, summarize a ratings file.

The data layer is imported inside the handlers: `movierec --help` and the client commands must not pay
for pandas, and must work in a client-only install.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from movierec.cli import CliError

DATASET_NAMES = ("ml-100k", "ml-1m", "ml-latest-small", "ml-25m")
FORMAT_CHOICES = ("auto", "grouplens", "dat", "csv", "recbole")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="fetch and inspect MovieLens data")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    fetch = sub.add_parser("fetch", help="download a data set into DEST/NAME (no-op when already complete)")
    fetch.add_argument("name", choices=DATASET_NAMES)
    fetch.add_argument("--dest", type=Path, default=Path("data"), help="parent folder (default: data)")
    fetch.add_argument("--url", help="download from this URL instead (mirror; for ml-100k a recbole wheel)")
    fetch.add_argument("--quiet", action="store_true", help="no progress output")
    fetch.set_defaults(handler=_fetch)

    split = sub.add_parser("split", help="write a holdout or time split of a fetched data set")
    split.add_argument("name", choices=DATASET_NAMES)
    split.add_argument("--data-dir", type=Path, default=Path("data"))
    split.add_argument("--split", choices=("holdout", "time"), default="holdout")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--fraction", type=float, default=0.2, help="share of ratings held out (default 0.2)")
    split.set_defaults(handler=_split)

    info = sub.add_parser("info", help="counts, density and rating histogram of a ratings file")
    info.add_argument("path", type=Path, help="ratings file, or a fetched data set folder")
    info.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    info.set_defaults(handler=_info)


def _fetch(args: argparse.Namespace) -> int:
    from movierec.trainer.data import DataError, fetch_dataset

    try:
        folder = fetch_dataset(args.name, args.dest, progress=not args.quiet, url=args.url)
    except DataError as exc:
        raise CliError(str(exc)) from None
    print(folder)
    return 0


def _split(args: argparse.Namespace) -> int:
    from movierec.trainer.data import DataError, materialize_split

    if not 0.0 <= args.fraction < 1.0:
        raise CliError(f"--fraction must be in [0, 1), got {args.fraction}")
    try:
        files = materialize_split(args.name, args.data_dir, args.split, seed=args.seed, fraction=args.fraction)
    except DataError as exc:
        raise CliError(str(exc)) from None
    print(f"train: {files.train}\ntest: {files.test}")
    return 0


def _ratings_path(path: Path) -> Path:
    """A data set folder stands for its ratings file (u.data, ratings.dat, ratings.csv or *.inter)."""
    if not path.is_dir():
        return path
    from movierec.trainer.data import DATASETS

    for name in dict.fromkeys(spec.ratings_file for spec in DATASETS.values()):
        if (path / name).is_file():
            return path / name
    inters = sorted(path.glob("*.inter"))
    if inters:
        return inters[0]
    raise CliError(f"{path}: no ratings file (u.data, ratings.dat, ratings.csv, *.inter) in this folder")


def _info(args: argparse.Namespace) -> int:
    from movierec.trainer.data import DataError, load_ratings

    path = _ratings_path(args.path)
    try:
        df = load_ratings(path, args.format)
    except DataError as exc:
        raise CliError(str(exc)) from None
    for line in summarize(df):
        print(line)
    return 0


def summarize(df: Any) -> list[str]:
    """Lines of `movierec data info`: sizes, density and a histogram of rating values."""
    n_users, n_items, n = int(df["user"].nunique()), int(df["item"].nunique()), len(df)
    density = n / (n_users * n_items) if n_users and n_items else 0.0
    lines = [f"users:   {n_users}", f"movies:  {n_items}", f"ratings: {n}", f"density: {density:.4%}"]
    counts = df["rating"].value_counts().sort_index()
    width = 40
    top = int(counts.max()) if len(counts) else 1
    lines.append("ratings histogram:")
    for value, count in counts.items():
        bar = "#" * max(1, round(width * int(count) / top))
        lines.append(f"  {float(value):>3g}  {int(count):>9}  {int(count) / n:6.1%}  {bar}")
    return lines
