"""Readers: every format on tiny fixture files, auto-detection, and one-line errors with line numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.trainer.data import DataError, detect_format, load_catalog, load_ratings

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
RATING_DTYPES = {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"}


def _dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in df.dtypes.items()}


@pytest.mark.parametrize(
    ("name", "fmt", "first", "n"),
    [
        ("u.data", "grouplens", (196, 242, 3.0, 881250949), 5),
        ("ratings.dat", "dat", (1, 1193, 5.0, 978300760), 4),
        ("ratings.csv", "csv", (1, 1, 4.0, 964982703), 4),
        ("ml.inter", "recbole", (196, 242, 3.0, 881250949), 3),
    ],
)
def test_ratings_formats(name: str, fmt: str, first: tuple[int, int, float, int], n: int) -> None:
    assert detect_format(FIX / name) == fmt
    for how in ("auto", fmt):
        df = load_ratings(FIX / name, how)
        assert list(df.columns) == ["user", "item", "rating", "timestamp"]
        assert _dtypes(df) == RATING_DTYPES
        assert len(df) == n
        assert tuple(df.iloc[0]) == first


def test_half_star_ratings() -> None:
    df = load_ratings(FIX / "ratings.csv")
    assert df["rating"].tolist() == [4.0, 4.5, 0.5, 5.0]
    assert load_ratings(FIX / "ml.inter")["rating"].tolist() == [3.0, 3.5, 1.0]


def test_autodetect_by_content_for_unknown_names(tmp_path: Path) -> None:
    cases = {
        "a.txt": ("1::2::3::4\n", "dat"),
        "b.txt": ("1\t2\t3\t4\n", "grouplens"),
        "c.txt": ("userId,movieId,rating,timestamp\n1,2,3,4\n", "csv"),
        "d.txt": ("user_id:token\titem_id:token\trating:float\n1\t2\t3\n", "recbole"),
    }
    for name, (text, fmt) in cases.items():
        (tmp_path / name).write_text(text)
        assert detect_format(tmp_path / name) == fmt
        df = load_ratings(tmp_path / name)
        assert tuple(df.iloc[0][["user", "item", "rating"]]) == (1, 2, 3.0)
    assert load_ratings(tmp_path / "d.txt")["timestamp"].tolist() == [0]  # RecBole without timestamp


def _bad(tmp_path: Path, name: str, text: str, fmt: str = "auto") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_ratings(path, fmt)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_ratings(tmp_path / "nope.data")
    assert "empty file" in _bad(tmp_path, "u.data", "")
    assert "empty file" in _bad(tmp_path, "x.base", "\n\n")
    assert "no ratings" in _bad(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n")


def test_wrong_field_counts(tmp_path: Path) -> None:
    assert "line 3: expected 4 fields, found 5" in _bad(tmp_path, "u.data", "1\t2\t3\t4\n1\t3\t3\t4\n1\t4\t3\t4\t9\n")
    assert "line 2: field 'timestamp' is missing" in _bad(tmp_path, "u1.base", "1\t2\t3\t4\n1\t3\t3\n")
    assert "line 1: expected 4 fields, found 3" in _bad(tmp_path, "u2.base", "1\t2\t3\n1\t3\t3\n")
    assert "line 2" in _bad(tmp_path, "r.dat", "1::2::3::4\n1::2::3\n")
    assert "line 3: expected 4 fields, found 5" in _bad(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n1,3,3,4,5\n")


def test_non_numeric_values_name_line_and_field(tmp_path: Path) -> None:
    msg = _bad(tmp_path, "u.data", "1\t2\t3\t4\n\n1\tx\t3\t4\n")
    assert "line 3: field 'item' must be an integer, got 'x'" in msg  # blank line 2 counted
    msg = _bad(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n1,3,good,4\n")
    assert "line 3: field 'rating' must be a number, got 'good'" in msg
    assert "line 2: field 'user' must be an integer, got '1.5'" in _bad(tmp_path, "r.dat", "1::2::3::4\n1.5::2::3::4\n")
    assert "header" in _bad(tmp_path, "ratings.csv", "user,movie,rating,timestamp\n1,2,3,4\n")


def test_out_of_range_and_non_finite_ratings(tmp_path: Path) -> None:
    assert "line 2: rating 5.5 outside [0.5, 5]" in _bad(tmp_path, "u.data", "1\t2\t3\t4\n1\t3\t5.5\t4\n")
    assert "line 3: rating 0 outside" in _bad(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n1,3,0,4\n")
    assert "line 2: field 'rating' must be a number, got 'nan'" in _bad(tmp_path, "u.data", "1\t2\t3\t4\n1\t3\tnan\t4\n")
    assert "line 1: rating inf outside" in _bad(tmp_path, "u.data", "1\t3\tinf\t4\n")


def test_duplicate_pairs(tmp_path: Path) -> None:
    msg = _bad(tmp_path, "u.data", "1\t2\t3\t4\n5\t6\t3\t4\n1\t2\t4\t9\n")
    assert "line 3: duplicate rating of user 1 for item 2 (first at line 1)" in msg
    msg = _bad(tmp_path, "big.data", "1\t2\t3\t4\n-1\t2\t3\t4\n-1\t2\t3\t4\n", fmt="grouplens")
    assert "line 3: duplicate rating of user -1" in msg  # negative ids take the slower DataFrame path


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown format"):
        load_ratings(FIX / "u.data", "parquet")
    (tmp_path / "blob").write_text("hello\n")
    with pytest.raises(DataError, match="cannot tell"):
        load_ratings(tmp_path / "blob")


# ------------------------------------------------------------------------------------------------- catalogs


def test_uitem_latin1_genres_and_year() -> None:
    assert detect_format(FIX / "u.item", "catalog") == "grouplens"
    df = load_catalog(FIX / "u.item")
    assert list(df.columns) == ["item", "title", "year", "genres"]
    assert str(df["item"].dtype) == "int64" and str(df["year"].dtype) == "Int64"
    rows = {r.item: r for r in df.itertuples()}
    assert rows[1].title == "Toy Story (1995)" and rows[1].year == 1995
    assert rows[1].genres == "Animation|Children's|Comedy"
    assert rows[267].title == "unknown" and pd.isna(rows[267].year) and rows[267].genres == "unknown"
    assert rows[1633].title == "Á köldum klaka (Cold Fever) (1994)" and rows[1633].year == 1996  # release date wins
    assert rows[1300].year == 1997 and rows[1300].genres == "Drama|Romance"  # year from the title


def test_movies_dat_and_csv() -> None:
    dat = load_catalog(FIX / "movies.dat")
    assert dat["title"].tolist()[1] == "Misérables, Les (1995)"
    assert dat["year"].tolist() == [1995, 1995, 1990]
    assert dat["genres"].tolist()[0] == "Animation|Children's|Comedy"
    csv = load_catalog(FIX / "movies.csv")
    assert csv["item"].tolist() == [1, 11, 149334, 171749]
    assert csv["title"].tolist()[1] == "American President, The (1995)"
    assert csv["year"].tolist()[:2] == [1995, 1995] and pd.isna(csv["year"].iloc[2])
    assert csv["year"].iloc[3] == 2006  # "(2006–2007)" ranges give the first year
    assert csv["genres"].tolist()[2:] == ["", ""]  # "(no genres listed)"


def test_recbole_item() -> None:
    df = load_catalog(FIX / "ml.item")
    assert df["title"].tolist() == ["Toy Story", "unkonwn", "Misérables, Les"]
    assert df["year"].tolist()[0] == 1995 and pd.isna(df["year"].iloc[1])
    assert df["genres"].tolist() == ["Animation|Children's|Comedy", "unknown", "Drama|Musical"]


def test_catalog_errors(tmp_path: Path) -> None:
    bad = tmp_path / "u.item"
    bad.write_bytes(b"1|A (1995)||||" + b"|0" * 19 + b"\n2|B (1996)||||" + b"0|" * 18 + b"0\n")
    with pytest.raises(DataError, match=r"line 1: expected 24 '\|'-separated fields, found 25"):
        load_catalog(bad)
    dup = tmp_path / "movies.csv"
    dup.write_text("movieId,title,genres\n1,A (1995),Drama\n1,B (1996),Drama\n")
    with pytest.raises(DataError, match="line 3: duplicate item id 1"):
        load_catalog(dup)
    nonint = tmp_path / "movies.dat"
    nonint.write_text("1::A (1995)::Drama\nx::B (1996)::Drama\n")
    with pytest.raises(DataError, match="line 2: item id 'x' is not an integer"):
        load_catalog(nonint)


def test_large_file_reads_without_row_loop(tmp_path: Path) -> None:
    """200k rows in well under a second: the fast path is the C parser, not Python per row."""
    import time

    rng = np.random.default_rng(0)
    n = 200_000
    df = pd.DataFrame(
        {"user": np.repeat(np.arange(2000), 100), "item": np.tile(np.arange(100), 2000),
         "rating": rng.integers(1, 6, n), "timestamp": rng.integers(8e8, 9e8, n)}
    )  # fmt: skip
    path = tmp_path / "u.data"
    df.to_csv(path, sep="\t", header=False, index=False)
    start = time.perf_counter()
    out = load_ratings(path)
    assert time.perf_counter() - start < 3.0
    assert len(out) == n and out["rating"].sum() == df["rating"].sum()
