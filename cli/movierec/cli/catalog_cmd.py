"""`movierec catalog upsert`: add movies to a running server's catalog, or update their metadata (SDK only).

The file is a CSV with a header: the movie id (`movie_id`, `movieId` or `item`), `title`, and optionally `year`
and `genres` ("Action|Comedy"; MovieLens' "(no genres listed)" = none). Without a year, the "(1995)" at the
end of a title gives it, as `movierec train` reads MovieLens catalogs. A file the command cannot use is
refused in one line naming the line and the column, before anything is sent; a large file is sent in calls
of at most the server's `max_movies_per_upsert` movies.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from movierec.cli import CliError
from movierec.cli.client_cmd import add_connection_args, connect

ID_COLUMNS = ("movie_id", "movieId", "item")
COLUMNS = (*ID_COLUMNS, "title", "year", "genres")
NO_GENRES = "(no genres listed)"
_YEAR_IN_TITLE = r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$"
_INTEGER = re.compile(r"^[+-]?\d+$")


def register(subparsers: Any) -> None:
    catalog = subparsers.add_parser("catalog", help="manage a running server's movie catalog")
    sub = catalog.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    up = sub.add_parser(
        "upsert",
        help="add movies to a running server's catalog (or update their metadata) from a CSV file",
        description="Send the movies of a CSV file to a running server (UpsertMovies): new ids are added to "
        "the catalog and recommended from their metadata at once, known ids get their title, year and genres "
        "replaced. Columns: movie_id (or movieId, item), title, year (optional), genres (optional, 'A|B').",
    )
    add_connection_args(up, timeout=30.0)
    up.add_argument("--file", type=Path, required=True, help="CSV with a header: movie_id|movieId|item, title, "
                    "year (optional), genres (optional, 'A|B')")
    up.add_argument("--batch-size", type=int, default=0,
                    help="movies per call (default: the server's max_movies_per_upsert)")
    up.add_argument("--json", action="store_true", help="print the result as JSON")
    up.set_defaults(handler=_upsert)


def read_movies_csv(path: Path) -> list[dict[str, Any]]:
    """The movies of a CSV file as the SDK's movie dicts (movie_id, title, year, genres); CliError on a bad file."""
    import pandas as pd

    if not path.is_file():
        raise CliError(f"{path}: no such file")
    frame: pd.DataFrame | None = None
    for encoding in ("utf-8", "latin-1"):
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, skipinitialspace=True)
            break
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError:
            raise CliError(f"{path}: empty file (expected a header: movie_id, title, year, genres)") from None
        except pd.errors.ParserError as exc:
            raise CliError(f"{path}: not a valid CSV file ({str(exc).strip().splitlines()[-1]})") from None
    assert frame is not None  # latin-1 decodes every byte
    frame.columns = [str(c).strip() for c in frame.columns]
    unknown = [c for c in frame.columns if c not in COLUMNS]
    if unknown:
        raise CliError(f"{path}: line 1: unknown column(s) {', '.join(map(repr, unknown))}; expected "
                       "movie_id (or movieId, item), title, year, genres")
    ids = [c for c in ID_COLUMNS if c in frame.columns]
    if len(ids) != 1:
        raise CliError(f"{path}: line 1: " + ("no movie id column (movie_id, movieId or item)" if not ids else
                       f"several movie id columns ({', '.join(ids)}); keep one"))
    if "title" not in frame.columns:
        raise CliError(f"{path}: line 1: no title column")
    if frame.empty:
        raise CliError(f"{path}: no movies (only a header)")

    def bad(row: int, message: str) -> CliError:
        return CliError(f"{path}: line {row + 2}: {message}")  # + header line, 1-based

    id_text = frame[ids[0]].str.strip()
    not_int = ~id_text.str.match(_INTEGER)
    if not_int.any():
        row = int(not_int.to_numpy().argmax())
        raise bad(row, f"{ids[0]} {id_text.iat[row]!r} is not an integer")
    movie_ids = id_text.astype("int64")
    dup = movie_ids.duplicated().to_numpy()
    if dup.any():
        row = int(dup.argmax())
        raise bad(row, f"duplicate movie id {int(movie_ids.iat[row])}")
    titles = frame["title"].str.strip()
    empty = (titles == "").to_numpy()
    if empty.any():
        raise bad(int(empty.argmax()), "empty title")
    from_title = pd.to_numeric(titles.str.extract(_YEAR_IN_TITLE, expand=False), errors="coerce")
    if "year" in frame.columns:
        year_text = frame["year"].str.strip()
        not_year = (year_text != "") & ~year_text.str.match(_INTEGER)
        if not_year.any():
            row = int(not_year.to_numpy().argmax())
            raise bad(row, f"year {year_text.iat[row]!r} is not an integer")
        years = pd.to_numeric(year_text.where(year_text != ""), errors="coerce").fillna(from_title)
    else:
        years = from_title
    years = years.fillna(0).astype("int64")
    genres = frame["genres"].str.strip() if "genres" in frame.columns else pd.Series("", index=frame.index)
    genre_lists = [[] if g in ("", NO_GENRES) else [x.strip() for x in g.split("|") if x.strip()] for g in genres]
    return [
        {"movie_id": int(m), "title": t, "year": int(y), "genres": g}
        for m, t, y, g in zip(movie_ids.tolist(), titles.tolist(), years.tolist(), genre_lists, strict=True)
    ]


def _upsert(args: argparse.Namespace) -> int:
    import json

    from movierec.client import MovieRecError

    if args.batch_size < 0:
        raise CliError(f"--batch-size must be >= 0, got {args.batch_size}")
    movies = read_movies_csv(args.file)
    added = updated = 0
    n_movies, version = 0, ""
    try:
        with connect(args) as client:
            size = args.batch_size or client.model_info().limits.max_movies_per_upsert or len(movies)
            for start in range(0, len(movies), size):
                res = client.upsert_movies(movies[start : start + size])
                added, updated = added + res.added, updated + res.updated
                n_movies, version = res.n_movies, res.model_version
    except MovieRecError as exc:
        done = f" (after {added + updated} of {len(movies)} movies were sent)" if added + updated else ""
        raise CliError(f"{exc}{done}") from None
    if args.json:
        print(json.dumps({"movies": len(movies), "added": added, "updated": updated, "n_movies": n_movies,
                          "model_version": version}))
    else:
        print(f"{args.file}: {len(movies)} movies, {added} added, {updated} updated; the catalog now holds "
              f"{n_movies} movies (model {version})", file=sys.stderr)
    return 0
