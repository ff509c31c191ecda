"""load_pairs: (user, movie) pairs in every layout `load_ratings` reads, rating/timestamp columns optional."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec.trainer.data import DataError, load_pairs


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pairs.csv", "userId,movieId\n1,10\n2,20\n1,10\n"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,3.5,1\n2,20,0.5,2\n1,10,4.0,3\n"),
        ("pairs.tsv", "1\t10\n2\t20\n1\t10\n"),
        ("u.test", "1\t10\t5\t881250949\n2\t20\t3\t881250949\n1\t10\t4\t1\n"),
        ("extra.txt", "1\t10\tsome\n2\t20\ttext\n1\t10\there\n"),
        ("ratings.dat", "1::10::5::978300760\n2::20::3::978300760\n1::10::4::1\n"),
        ("pairs.dat", "1::10\n2::20\n1::10\n"),
        ("x.inter", "user_id:token\titem_id:token\n1\t10\n2\t20\n1\t10\n"),
        ("y.inter", "user_id:token\titem_id:token\trating:float\n1\t10\t3\n2\t20\t4\n1\t10\t5\n"),
    ],
)
def test_pairs_formats(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    df = load_pairs(path)
    assert list(df.columns) == ["user", "item"] and str(df["user"].dtype) == "int64"
    assert df.to_numpy().tolist() == [[1, 10], [2, 20], [1, 10]]  # file order, repeats kept


def test_pairs_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user,movie\n1,2\n")
    with pytest.raises(DataError, match="bad.csv: line 1: header 'user,movie' lacks userId, movieId"):
        load_pairs(path)
    path.write_text("userId,movieId\n1,2\nx,3\n")
    with pytest.raises(DataError, match="bad.csv: line 3: field 'user' must be an integer"):
        load_pairs(path)
