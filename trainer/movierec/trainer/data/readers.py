"""Readers for MovieLens ratings, catalogs and user profiles in the GroupLens, ml-1m, ml-latest and RecBole
layouts.

All formats are read by pandas' C parser with explicit dtypes: ml-25m has 25M rows, and a Python loop per
row would take minutes. Validation is vectorized too; only when something is wrong do we spend extra time
(a second, string-typed read or a scan of the file) to name the exact line in the error.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from movierec.trainer.data.errors import DataError

FORMATS: tuple[str, ...] = ("grouplens", "dat", "csv", "recbole")
# What a MovieLens ratings file may hold (any of its data sets). A model's own scale is not this: the trainer
# infers it from the training ratings (movierec.core.artifact.RatingScale.infer) and the artifact carries it.
RATING_MIN = 0.5
RATING_MAX = 5.0
RATING_FIELDS: tuple[str, ...] = ("user", "item", "rating", "timestamp")
_RATING_DTYPES: dict[str, str] = {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"}

# u.item's 19 genre flags, in u.genre order.
GROUPLENS_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRES = "(no genres listed)"
_YEAR_IN_TITLE = r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$"
_RECBOLE_RATING_NAMES = {"user_id": "user", "item_id": "item", "rating": "rating", "timestamp": "timestamp"}


# --------------------------------------------------------------------------------------------------- detection


def _first_line(path: Path, encoding: str = "latin-1") -> str:
    with open(path, encoding=encoding, newline="") as fh:
        for line in fh:
            if line.strip("\r\n"):
                return line.rstrip("\r\n")
    return ""


def _check_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if path.stat().st_size == 0 or not _first_line(path):
        raise DataError(f"{path}: empty file")
    return path


def _is_recbole_header(first: str) -> bool:
    """RecBole's atomic files start with `name:type` columns (`user_id:token`, `zip_code:token`, ...)."""
    return bool(re.match(r"^\w+_id:", first) or re.match(r"^\w+:(?:token|float)(?:_seq)?(?:\t|$)", first))


def _detect(path: Path, kind: str) -> str:
    """Format from the file name, falling back to the first line (so renamed files still work)."""
    name = path.name.lower()
    if name in ("u.data", "u.item", "u.user"):
        return "grouplens"
    if name.endswith((".inter", ".item")):
        return "recbole"
    if name.endswith(".user") and _is_recbole_header(_first_line(path)):
        return "recbole"  # a ".user" in another layout (a renamed u.user) is told by its content below
    if name.endswith(".dat"):
        return "dat"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".base", ".test", ".tsv")) and kind != "users":
        return "grouplens"
    first = _first_line(path)
    if _is_recbole_header(first):
        return "recbole"
    if "::" in first:
        return "dat"
    if kind == "ratings" and "\t" in first:
        return "grouplens"
    if kind == "catalog" and first.count("|") >= 5:
        return "grouplens"
    if kind == "users" and first.count("|") >= 4:
        return "grouplens"
    if "," in first:
        return "csv"
    raise DataError(f"{path}: cannot tell the {kind} format from the name or first line; pass fmt= one of {FORMATS}")


def detect_format(path: Path, kind: str = "ratings") -> str:
    """The format name (one of FORMATS) of a ratings (`kind="ratings"`), catalog (`"catalog"`) or user
    profiles (`"users"`) file."""
    return _detect(_check_file(Path(path)), kind)


def _resolve(path: Path, fmt: str, kind: str) -> str:
    if fmt == "auto":
        return _detect(path, kind)
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}")
    return fmt


# ----------------------------------------------------------------------------------------------- line numbers


def _line_of_row(path: Path, row: int, header_lines: int, encoding: str = "latin-1") -> int:
    """1-based line number of data row `row` (pandas skips blank lines, so count only non-blank ones).

    Only called on the error path: a scan of the file is fine there.
    """
    seen = -1
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            if number <= header_lines or not line.strip("\r\n"):
                continue
            seen += 1
            if seen == row:
                return number
    return header_lines + row + 1


def _parser_error(path: Path, exc: Exception) -> DataError:
    msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if found:
        want, line, saw = found.groups()
        return DataError(f"{path}: line {line}: expected {want} fields, found {saw}")
    return DataError(f"{path}: cannot parse: {msg}")


# -------------------------------------------------------------------------------------------------- ratings


@dataclass(frozen=True)
class _Layout:
    """Where the rating fields sit in a file: separator, header lines and column position of each field."""

    sep: str
    header_lines: int
    n_fields: int
    columns: dict[str, int]  # output field -> column position
    float_fields: tuple[str, ...] = ()  # read as float64 and checked to be integral (RecBole "float" ids/times)
    empty_columns: tuple[int, ...] = ()  # must be empty (the gaps of the "::" separator read with sep=":")


def _header_fields(path: Path, sep: str) -> list[str]:
    return _first_line(path, "utf-8-sig").split(sep)


def _ratings_layout(path: Path, fmt: str, *, pairs: bool = False) -> _Layout:
    """The layout of a ratings file; with `pairs`, of a (user, movie) pairs file in the same formats: only
    the user and movie columns are read, rating, timestamp and any other columns are optional and ignored."""
    if fmt == "grouplens":
        if not pairs:
            return _Layout("\t", 0, 4, {"user": 0, "item": 1, "rating": 2, "timestamp": 3})
        n = len(_first_line(path).split("\t"))
        if n < 2:
            raise DataError(f"{path}: line 1: expected user<TAB>movie[<TAB>rating[<TAB>timestamp]], found {n} field")
        return _Layout("\t", 0, n, {"user": 0, "item": 1})
    if fmt == "dat":
        # "1::1193::5::978300760" read with sep=":" gives 7 fields; the C parser cannot split on "::".
        n = 4 if not pairs else _first_line(path).count("::") + 1
        if n < 2:
            raise DataError(f"{path}: line 1: expected user::movie[::rating[::timestamp]]")
        fields = {"user": 0, "item": 2} if pairs else {"user": 0, "item": 2, "rating": 4, "timestamp": 6}
        return _Layout(":", 0, 2 * n - 1, fields, empty_columns=tuple(range(1, 2 * n - 1, 2)))
    if fmt == "csv":
        header = [h.strip() for h in _header_fields(path, ",")]
        want = {"userId": "user", "movieId": "item", "rating": "rating", "timestamp": "timestamp"}
        if pairs:
            want = {"userId": "user", "movieId": "item"}
        missing = [h for h in want if h not in header]
        if missing:
            raise DataError(f"{path}: line 1: header {','.join(header)!r} lacks {', '.join(missing)}")
        return _Layout(",", 1, len(header), {out: header.index(h) for h, out in want.items()})
    # recbole: "user_id:token\titem_id:token\trating:float\ttimestamp:float", any order, extra columns allowed
    header = _header_fields(path, "\t")
    names = [h.split(":", 1)[0].strip() for h in header]
    columns = {out: names.index(src) for src, out in _RECBOLE_RATING_NAMES.items() if src in names}
    if pairs:
        columns = {f: c for f, c in columns.items() if f in ("user", "item")}
    missing = [f for f in (("user", "item") if pairs else ("user", "item", "rating")) if f not in columns]
    if missing:
        raise DataError(f"{path}: line 1: RecBole header lacks {', '.join(f + '_id' if f != 'rating' else f for f in missing)}")
    floats = tuple(f for f in columns if header[columns[f]].partition(":")[2].strip() == "float" and f != "rating")
    return _Layout("\t", 1, len(header), columns, float_fields=floats)


def _diagnose_ratings(path: Path, layout: _Layout) -> DataError:
    """Find the first bad row after the typed read failed, by re-reading as strings (error path only)."""
    try:
        raw = pd.read_csv(
            path, sep=layout.sep, header=None, skiprows=layout.header_lines, dtype=str,
            keep_default_na=False, na_values=[""], encoding="latin-1", engine="c",
        )  # fmt: skip
    except (pd.errors.ParserError, ValueError) as exc:
        return _parser_error(path, exc)
    if raw.shape[1] != layout.n_fields:
        return DataError(f"{path}: line {layout.header_lines + 1}: expected {layout.n_fields} fields, found {raw.shape[1]}")
    for col in layout.empty_columns:
        bad = raw[col].notna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            return DataError(f"{path}: line {_line_of_row(path, row, layout.header_lines)}: fields must be separated by '::'")
    first_bad: tuple[int, str, str] | None = None
    for field, col in layout.columns.items():
        values = raw[col]
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna().to_numpy().copy()
        if field in ("user", "item", "timestamp") and field not in layout.float_fields:
            bad |= ~values.fillna("").str.strip().str.fullmatch(r"[+-]?\d+").to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            if first_bad is None or row < first_bad[0]:
                first_bad = (row, field, values.iloc[row])
    if first_bad is None:
        return DataError(f"{path}: cannot parse (values do not fit {_RATING_DTYPES})")
    row, field, value = first_bad
    line = _line_of_row(path, row, layout.header_lines)
    if pd.isna(value):
        return DataError(f"{path}: line {line}: field {field!r} is missing (expected {layout.n_fields} fields)")
    kind = "an integer" if field != "rating" else "a number"
    return DataError(f"{path}: line {line}: field {field!r} must be {kind}, got {value!r}")


def load_ratings(path: Path | str, fmt: str = "auto") -> pd.DataFrame:
    """Ratings as a DataFrame with columns user:int64, item:int64, rating:float32, timestamp:int64.

    Rows keep file order (GroupLens folds depend on it). Raises `DataError` naming the file and line for a
    missing or empty file, a wrong field count, a non-numeric value, a rating outside [0.5, 5] or not
    finite, and a duplicate (user, item) pair: a silently dropped or doubled rating skews every metric.
    """
    path = _check_file(Path(path))
    fmt = _resolve(path, fmt, "ratings")
    layout = _ratings_layout(path, fmt)
    out = _read_layout(path, layout)
    if "timestamp" not in out:
        out["timestamp"] = np.zeros(len(out), dtype=np.int64)
    out = out.astype(_RATING_DTYPES)[list(RATING_FIELDS)]
    _validate_ratings(path, out, layout.header_lines)
    return out


def load_pairs(path: Path | str, fmt: str = "auto") -> pd.DataFrame:
    """(user, movie) pairs to predict, in any format `load_ratings` reads: columns user:int64, item:int64.

    Rating, timestamp and other columns are optional and ignored: `userId,movieId[,rating,timestamp]` CSV,
    `user<TAB>movie[<TAB>...]` rows, `user::movie[::...]`, RecBole with or without rating. File order is
    kept; a pair may repeat.
    """
    path = _check_file(Path(path))
    fmt = _resolve(path, fmt, "ratings")
    layout = _ratings_layout(path, fmt, pairs=True)
    return _read_layout(path, layout).astype({"user": "int64", "item": "int64"})[["user", "item"]]


def _read_layout(path: Path, layout: _Layout) -> pd.DataFrame:
    """The layout's fields of every row (typed read, then the checks of empty and float columns)."""
    dtypes: dict[int, str] = {}
    for field, col in layout.columns.items():
        dtypes[col] = "float64" if field in layout.float_fields else _RATING_DTYPES[field]
    for col in layout.empty_columns:
        dtypes[col] = "float32"
    try:
        raw = pd.read_csv(
            path, sep=layout.sep, header=None, skiprows=layout.header_lines, dtype=dtypes,
            encoding="latin-1", engine="c", na_filter=bool(layout.empty_columns or layout.float_fields),
        )  # fmt: skip
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: no ratings (only a header)") from None
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc) from None
    except (ValueError, OverflowError):
        raise _diagnose_ratings(path, layout) from None
    if raw.shape[1] != layout.n_fields:
        raise DataError(f"{path}: line {layout.header_lines + 1}: expected {layout.n_fields} fields, found {raw.shape[1]}")
    if len(raw) == 0:
        raise DataError(f"{path}: no ratings (only a header)")
    for col in layout.empty_columns:
        if raw[col].notna().any():
            raise _diagnose_ratings(path, layout)
    for field in layout.float_fields:
        values = raw[layout.columns[field]].to_numpy()
        if not np.isfinite(values).all():
            raise _diagnose_ratings(path, layout)
        if (values != np.floor(values)).any():
            raise _bad_row(path, layout, values != np.floor(values), f"field {field!r} must be a whole number")
    return pd.DataFrame({f: raw[layout.columns[f]].to_numpy() for f in layout.columns})


def _bad_row(path: Path, layout: _Layout | int, mask: np.ndarray, problem: str) -> DataError:
    header_lines = layout.header_lines if isinstance(layout, _Layout) else layout
    row = int(np.argmax(mask))
    return DataError(f"{path}: line {_line_of_row(path, row, header_lines)}: {problem}")


def _validate_ratings(path: Path, df: pd.DataFrame, header_lines: int) -> None:
    rating = df["rating"].to_numpy()
    bad = ~np.isfinite(rating) | (rating < RATING_MIN) | (rating > RATING_MAX)
    if bad.any():
        value = rating[int(np.argmax(bad))]
        raise _bad_row(path, header_lines, bad, f"rating {value:g} outside [{RATING_MIN:g}, {RATING_MAX:g}]")
    dup = _duplicate_mask(df["user"].to_numpy(), df["item"].to_numpy())
    if dup.any():
        row = int(np.argmax(dup))
        user, item = int(df["user"].iat[row]), int(df["item"].iat[row])
        first = int(np.argmax((df["user"].to_numpy() == user) & (df["item"].to_numpy() == item)))
        first_line = _line_of_row(path, first, header_lines)
        raise _bad_row(path, header_lines, dup, f"duplicate rating of user {user} for item {item} (first at line {first_line})")


def _duplicate_mask(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """True for every repeat of an earlier (user, item) pair; one int64 key when ids fit (2x faster)."""
    if users.size and users.min() >= 0 and items.min() >= 0 and users.max() < 2**31 and items.max() < 2**31:
        return pd.Series((users << 32) | items).duplicated().to_numpy()
    return pd.DataFrame({"u": users, "i": items}).duplicated().to_numpy()


# -------------------------------------------------------------------------------------------------- catalog


CATALOG_COLUMNS: tuple[str, ...] = ("item", "title", "year", "genres")


def _year_from_title(titles: pd.Series) -> pd.Series:
    return pd.to_numeric(titles.str.extract(_YEAR_IN_TITLE, expand=False), errors="coerce").astype("Int64")


def _catalog_frame(
    path: Path, item: pd.Series, title: pd.Series, year: pd.Series, genres: pd.Series, header_lines: int = 0
) -> pd.DataFrame:
    ids = pd.to_numeric(item.str.strip() if item.dtype == object else item, errors="coerce")
    bad = ids.isna().to_numpy() | ~np.isfinite(ids.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        raise _bad_row(path, header_lines, bad, f"item id {item.iloc[int(np.argmax(bad))]!r} is not an integer")
    df = pd.DataFrame(
        {
            "item": ids.to_numpy().astype(np.int64),
            "title": title.fillna("").astype(str).to_numpy(),
            "year": year.astype("Int64").array,
            "genres": genres.fillna("").astype(str).replace(NO_GENRES, "").to_numpy(),
        }
    )
    if df.empty:
        raise DataError(f"{path}: no movies")
    return df


def _read_lines(path: Path, encoding: str) -> pd.Series:
    with open(path, encoding=encoding, newline="") as fh:
        lines = fh.read().splitlines()
    return pd.Series([ln for ln in lines if ln.strip()], dtype=object)


def _split_fields(path: Path, lines: pd.Series, sep: str, n: int, header_lines: int) -> pd.DataFrame:
    parts = lines.str.split(sep, n=n - 1, regex=False, expand=True)
    if parts.shape[1] < n or parts[n - 1].isna().any():
        counts = lines.str.count(re.escape(sep)).to_numpy() + 1
        raise _bad_row(path, header_lines, counts < n, f"expected {n} {sep!r}-separated fields")
    return parts


def load_catalog(path: Path | str, fmt: str = "auto") -> pd.DataFrame:
    """Movies as a DataFrame: item:int64, title:str, year:Int64 (nullable), genres:str ("|"-joined, "" if none).

    Titles are kept as in the file (GroupLens titles carry the year, "Toy Story (1995)"); the year comes
    from the release date or RecBole's release_year where present, else from the "(YYYY)" in the title.
    Catalogs are small (<100k rows), so the string work here is pandas' vectorized `str` methods.
    """
    path = _check_file(Path(path))
    fmt = _resolve(path, fmt, "catalog")
    if fmt == "grouplens":
        df = _load_uitem(path)
    elif fmt == "dat":
        parts = _split_fields(path, _read_lines(path, "latin-1"), "::", 3, 0)
        title = parts[1]
        df = _catalog_frame(path, parts[0], title, _year_from_title(title), parts[2].str.strip())
    elif fmt == "csv":
        df = _load_movies_csv(path)
    else:
        df = _load_recbole_item(path)
    dup = df["item"].duplicated().to_numpy()
    if dup.any():
        header = 1 if fmt in ("csv", "recbole") else 0
        raise _bad_row(path, header, dup, f"duplicate item id {int(df['item'].iat[int(np.argmax(dup))])}")
    return df


def _load_uitem(path: Path) -> pd.DataFrame:
    n = 5 + len(GROUPLENS_GENRES)
    lines = _read_lines(path, "latin-1")
    parts = lines.str.split("|", regex=False, expand=True)
    counts = lines.str.count(r"\|").to_numpy() + 1
    if parts.shape[1] != n or (counts != n).any():
        raise _bad_row(path, 0, counts != n, f"expected {n} '|'-separated fields, found {counts[int(np.argmax(counts != n))]}")
    flags = parts.iloc[:, 5:].apply(pd.to_numeric, errors="coerce")
    bad = ~flags.isin([0, 1]).all(axis=1).to_numpy()
    if bad.any():
        raise _bad_row(path, 0, bad, "genre flags must be 0 or 1")
    genres = pd.Series("", index=parts.index, dtype=object)
    for k, name in enumerate(GROUPLENS_GENRES):  # 19 column-wise steps, each vectorized over all movies
        genres = genres + np.where(flags.iloc[:, k].to_numpy() == 1, name + "|", "")
    genres = genres.str.rstrip("|")
    title = parts[1]
    year = pd.to_numeric(parts[2].str.extract(r"(\d{4})\s*$", expand=False), errors="coerce").astype("Int64")
    year = year.fillna(_year_from_title(title))
    return _catalog_frame(path, parts[0], title, year, genres)


def _read_str_table(path: Path, sep: str, quoting: int = csv.QUOTE_MINIMAL) -> pd.DataFrame:
    """A headed table as strings; UTF-8 (ml-latest, RecBole) with a latin-1 fallback for older exports."""
    for encoding in ("utf-8", "latin-1"):
        try:
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding, engine="c", quoting=quoting)
        except UnicodeDecodeError:
            continue
        except pd.errors.ParserError as exc:
            raise _parser_error(path, exc) from None
    raise AssertionError("unreachable: latin-1 decodes every byte")


def _load_movies_csv(path: Path) -> pd.DataFrame:
    raw = _read_str_table(path, sep=",")
    missing = [c for c in ("movieId", "title") if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: line 1: header lacks {', '.join(missing)}")
    genres = raw["genres"] if "genres" in raw.columns else pd.Series("", index=raw.index)
    title = raw["title"].str.strip()
    return _catalog_frame(path, raw["movieId"], title, _year_from_title(title), genres, header_lines=1)


def _load_recbole_item(path: Path) -> pd.DataFrame:
    raw = _read_str_table(path, sep="\t", quoting=csv.QUOTE_NONE)
    raw.columns = [c.split(":", 1)[0].strip() for c in raw.columns]
    if "item_id" not in raw.columns:
        raise DataError(f"{path}: line 1: RecBole header lacks item_id")
    empty = pd.Series("", index=raw.index, dtype=object)
    title = raw.get("movie_title", raw.get("title", empty))
    if "release_year" in raw.columns:
        year = pd.to_numeric(raw["release_year"].str.strip(), errors="coerce").astype("Int64")
    else:
        year = _year_from_title(title)
    genres = raw.get("class", raw.get("genre", empty)).str.split().str.join("|")
    return _catalog_frame(path, raw["item_id"], title, year, genres, header_lines=1)


# ---------------------------------------------------------------------------------------------------- users


USER_COLUMNS: tuple[str, ...] = ("user", "age", "gender", "occupation", "zip")
USER_AGE_MIN, USER_AGE_MAX = 1, 120  # an age outside this range is treated as not given (0)
# ml-1m's users.dat gives an age group code, not an age. Each code becomes an age inside its group: the code
# itself (the group's lower bound: 18 = 18-24, 25 = 25-34, 35 = 35-44, 45 = 45-49, 50 = 50-55, 56 = 56+),
# except 1 ("under 18"), which becomes 16. So `movierec.core.features.age_group` gives back ml-1m's group.
ML1M_AGES: Mapping[int, int] = MappingProxyType({1: 16, 18: 18, 25: 25, 35: 35, 45: 45, 50: 50, 56: 56})
# ml-1m's occupation codes 0..20 (its README), lower-case; 0 ("other" or not specified) is "other".
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "k-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
)  # fmt: skip
_GENDERS = ("F", "M")
# Header names (lower-cased, RecBole's ":type" dropped) of each profile field in RecBole and CSV files.
_USER_HEADER_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userid", "user"),
    "age": ("age",),
    "gender": ("gender", "sex"),
    "occupation": ("occupation",),
    "zip": ("zip_code", "zip", "zipcode", "zip-code"),
}


def load_users(path: Path | str, fmt: str = "auto") -> pd.DataFrame:
    """User profiles: user:int64, age:int64 (0 = not given), gender ("F"/"M"/""), occupation, zip (strings).

    Layouts: GroupLens u.user (`user|age|gender|occupation|zip`), ml-1m users.dat
    (`UserID::Gender::Age::Occupation::Zip-code`, age and occupation as codes: see `ML1M_AGES` and
    `ML1M_OCCUPATIONS`), RecBole `.user` (tab-separated, `user_id:token age:float gender:token
    occupation:token zip_code:token` in any order, any but user_id may be absent) and CSV with a header
    (userId/user_id/user, age, gender, occupation, zip/zip_code; any but the user column may be absent).

    Partial profiles are normal and never an error: a blank or unknown value is "not given" (age 0, ""),
    a gender other than F/M (any case) is "", an ml-1m age or occupation code outside its table is 0 / "".
    Every field is stripped; occupation is lower-cased; zip stays a string (leading zeros kept). UTF-8 with
    an ISO-8859-1 fallback. Rows keep file order. Raises `DataError` naming the file and line for a wrong
    field count, a user id that is not an integer and a repeated user id.
    """
    path = _check_file(Path(path))
    fmt = _resolve(path, fmt, "users")
    if fmt == "csv":
        return _load_users_csv(path)
    lines, numbers = _text_lines(path)
    if fmt == "recbole":
        header, lines, numbers = lines.iloc[0], lines.iloc[1:].reset_index(drop=True), numbers[1:]
        names = [h.split(":", 1)[0].strip() for h in header.split("\t")]
        fields = _user_header_columns(path, names)
        parts = _split_user_fields(path, lines, numbers, "\t", len(names))
        return _users_frame(path, parts, fields, lambda row: int(numbers[row]))
    if fmt == "grouplens":
        parts = _split_user_fields(path, lines, numbers, "|", 5)
        fields = {"user": 0, "age": 1, "gender": 2, "occupation": 3, "zip": 4}
        return _users_frame(path, parts, fields, lambda row: int(numbers[row]))
    if fmt == "dat":
        parts = _split_user_fields(path, lines, numbers, "::", 5)
        # codes -> representative age / occupation name; a code not in the table is "not given"
        parts[2] = pd.to_numeric(parts[2], errors="coerce").map(ML1M_AGES).fillna(0).astype(np.int64)
        parts[3] = pd.to_numeric(parts[3], errors="coerce").map(dict(enumerate(ML1M_OCCUPATIONS))).fillna("")
        fields = {"user": 0, "gender": 1, "age": 2, "occupation": 3, "zip": 4}
        return _users_frame(path, parts, fields, lambda row: int(numbers[row]))
    raise DataError(f"{path}: no user profiles in the {fmt} format; use u.user, users.dat, a RecBole .user or a CSV")


def _text_lines(path: Path) -> tuple[pd.Series, np.ndarray]:
    """The non-blank lines of a small text file and their 1-based line numbers.

    UTF-8 (a BOM is dropped) or else ISO-8859-1, which decodes any byte. Split on "\\n" only: str.splitlines
    would also break at the C1 control \\x85 that ISO-8859-1 gives for byte 0x85.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = pd.Series(text.split("\n"), dtype=object).str.rstrip("\r")
    keep = (lines.str.strip() != "").to_numpy(dtype=bool)
    return lines[keep].reset_index(drop=True), np.flatnonzero(keep) + 1


def _split_user_fields(path: Path, lines: pd.Series, numbers: np.ndarray, sep: str, n: int) -> pd.DataFrame:
    """Exactly `n` fields per line, each stripped; a line with another count is an error naming it."""
    if lines.empty:
        raise DataError(f"{path}: no users (only a header)")
    counts = lines.str.count(re.escape(sep)).to_numpy() + 1
    bad = counts != n
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: line {numbers[row]}: expected {n} {sep!r}-separated fields, found {counts[row]}")
    parts = lines.str.split(sep, regex=False, expand=True)
    return pd.DataFrame({c: parts[c].str.strip() for c in range(n)})


def _user_header_columns(path: Path, names: list[str]) -> dict[str, int]:
    """Field -> column position in a header (the first of its names found); the user column is required."""
    fields = {}
    for field_, aliases in _USER_HEADER_NAMES.items():
        found = [i for i, name in enumerate(names) if name.lower() in aliases]
        if found:
            fields[field_] = found[0]
    if "user" not in fields:
        raise DataError(f"{path}: line 1: header {names!r} has no user id column (user_id, userId or user)")
    return fields


def _load_users_csv(path: Path) -> pd.DataFrame:
    # pandas pads a short row with "" (and refuses a long one with a message about its own line count), so
    # count the fields of each line first: commas outside "quoted" parts. A quoted value spanning lines is
    # not supported in a profiles file.
    lines, numbers = _text_lines(path)
    counts = lines.str.replace(r'"(?:[^"]|"")*"', "", regex=True).str.count(",").to_numpy() + 1
    bad = counts != counts[0]
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: line {numbers[row]}: expected {counts[0]} ','-separated fields, found {counts[row]}")
    raw = _read_str_table(path, sep=",")
    if raw.empty:
        raise DataError(f"{path}: no users (only a header)")
    names = [str(c).split(":", 1)[0].strip() for c in raw.columns]
    raw.columns = list(range(raw.shape[1]))
    fields = _user_header_columns(path, names)
    parts = raw.apply(lambda col: col.str.strip())
    return _users_frame(path, parts, fields, lambda row: int(numbers[row + 1]))


def _users_frame(path: Path, parts: pd.DataFrame, fields: Mapping[str, int], line_of: Callable[[int], int]) -> pd.DataFrame:
    """The typed profile frame from string columns (`fields`: profile field -> column of `parts`)."""
    empty = pd.Series("", index=parts.index, dtype=object)

    def column(name: str) -> pd.Series:
        return parts[fields[name]] if name in fields else empty

    user = column("user")
    bad = ~user.str.fullmatch(r"[+-]?\d{1,18}").to_numpy(dtype=bool, na_value=False)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: line {line_of(row)}: field 'user' must be an integer, got {user.iloc[row]!r}")
    ids = user.astype(np.int64).to_numpy()
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        row = int(np.argmax(dup))
        first = int(np.argmax(ids == ids[row]))
        raise DataError(f"{path}: line {line_of(row)}: duplicate user id {ids[row]} (first at line {line_of(first)})")
    age = pd.to_numeric(column("age"), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        known = np.isfinite(age) & (age >= USER_AGE_MIN) & (age < USER_AGE_MAX + 1)
    gender = column("gender").str.upper()
    return pd.DataFrame(
        {
            "user": ids,
            "age": np.where(known, np.floor(np.where(known, age, 0)), 0).astype(np.int64),
            "gender": gender.where(gender.isin(_GENDERS), "").to_numpy(dtype=object),
            "occupation": column("occupation").str.lower().to_numpy(dtype=object),
            "zip": column("zip").to_numpy(dtype=object),
        }
    )
