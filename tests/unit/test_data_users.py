"""User profiles: u.user, users.dat, RecBole .user and CSV on tiny files; partial rows kept, bad rows named by
line; the data sets' users files; `movierec train --users`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from movierec.trainer.data import DATASETS, DataError, dataset_users_file, detect_format, load_users
from movierec.trainer.data.readers import ML1M_AGES, ML1M_OCCUPATIONS

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
USER_DTYPES = {"user": "int64", "age": "int64"}
COLUMNS = ["user", "age", "gender", "occupation", "zip"]


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def _rows(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in df[COLUMNS].itertuples(index=False, name=None)]


@pytest.mark.parametrize(
    ("name", "fmt", "n", "first", "last"),
    [
        ("u.user", "grouplens", 5, (1, 24, "M", "technician", "85711"), (5, 33, "F", "other", "15213")),
        ("users.dat", "dat", 6, (1, 16, "F", "k-12 student", "48067"), (6, 50, "F", "homemaker", "55117")),
        ("ml.user", "recbole", 3, (1, 24, "M", "technician", "85711"), (3, 23, "M", "writer", "32067")),
    ],
)
def test_user_formats(name: str, fmt: str, n: int, first: tuple[Any, ...], last: tuple[Any, ...]) -> None:
    assert detect_format(FIX / name, "users") == fmt
    for how in ("auto", fmt):
        df = load_users(FIX / name, how)
        assert list(df.columns) == COLUMNS
        assert {c: str(df[c].dtype) for c in USER_DTYPES} == USER_DTYPES
        assert all(isinstance(v, str) for c in ("gender", "occupation", "zip") for v in df[c])
        assert len(df) == n
        assert _rows(df)[0] == first and _rows(df)[-1] == last


def test_users_dat_codes() -> None:
    df = load_users(FIX / "users.dat")
    assert df["zip"].tolist()[3] == "02460"  # a leading zero is kept: zip is a string
    assert df["occupation"].tolist() == ["k-12 student", "self-employed", "scientist", "executive/managerial",
                                         "writer", "homemaker"]  # fmt: skip
    # every age code lands inside its ml-1m group, so the features' age groups are ml-1m's own
    from movierec.core.features import AGE_GROUPS, age_group

    assert list(age_group(list(ML1M_AGES.values()))) == list(AGE_GROUPS)
    assert ML1M_AGES[1] == 16 and len(ML1M_OCCUPATIONS) == 21 and ML1M_OCCUPATIONS[0] == "other"


def test_autodetect_users_by_content(tmp_path: Path) -> None:
    cases = {
        "a.txt": ("1|24|M|technician|85711\n", "grouplens"),
        "b.txt": ("1::F::1::10::48067\n", "dat"),
        "c.txt": ("user_id:token\tgender:token\n1\tF\n", "recbole"),
        "d.txt": ("userId,gender\n1,F\n", "csv"),
        "users.tsv": ("1|24|M|technician|85711\n", "grouplens"),  # .tsv means ratings rows, not users
    }
    for name, (text, fmt) in cases.items():
        assert detect_format(_write(tmp_path / name, text), "users") == fmt
        assert load_users(tmp_path / name)["user"].tolist() == [1]
    with pytest.raises(DataError, match="cannot tell the users format"):
        load_users(_write(tmp_path / "e.txt", "1 24 M\n"))
    with pytest.raises(DataError, match="unknown format"):
        load_users(FIX / "u.user", "xml")


def test_partial_profiles_never_crash(tmp_path: Path) -> None:
    uuser = _write(
        tmp_path / "u.user",
        b"\xef\xbb\xbf1|24|M|technician|85711\r\n"  # UTF-8 BOM, CRLF
        b"  2 |  53 | f |  Other  | 04043 \r\n"  # extra whitespace, lower-case gender, leading zero
        b"\n"
        b"3||||\n"  # nothing but the id
        b"4|abc|X|engineer|\n"  # non-numeric age, unknown gender, no zip
        b"5|-3|m|NONE|V3N4P\n"  # impossible age, upper-case occupation, Canadian postcode
        b"6|200|F||00000\n",
    )
    df = load_users(uuser)
    assert _rows(df) == [
        (1, 24, "M", "technician", "85711"),
        (2, 53, "F", "other", "04043"),
        (3, 0, "", "", ""),
        (4, 0, "", "engineer", ""),
        (5, 0, "M", "none", "V3N4P"),
        (6, 0, "F", "", "00000"),
    ]
    dat = _write(
        tmp_path / "users.dat",
        b"1::F::1::0::48067\n"  # occupation 0 = "other"
        b"2:: m ::7::21::\n"  # age and occupation codes outside the tables, no zip
        b"3::::::::\n"  # nothing but the id
        b"4::M:: 56 :: 12 ::55455-1234\n"
        b"5::F::x::y::02460\n",
    )
    assert _rows(load_users(dat)) == [
        (1, 16, "F", "other", "48067"),
        (2, 0, "M", "", ""),
        (3, 0, "", "", ""),
        (4, 56, "M", "programmer", "55455-1234"),
        (5, 0, "F", "", "02460"),
    ]


def test_iso_8859_1_bytes(tmp_path: Path) -> None:
    # 0xe9 is "é" in ISO-8859-1 (not valid UTF-8); 0x85 is a C1 control there, and must not split the line
    path = _write(tmp_path / "u.user", b"1|30|F|caf\xe9 owner|85711\n2|40|M|x\x85y|12345\n")
    df = load_users(path)
    assert df["occupation"].tolist() == ["café owner", "x\x85y"] and len(df) == 2
    utf8 = _write(tmp_path / "v.user", "user_id:token\toccupation:token\n1\tcafé owner\n")
    assert load_users(utf8)["occupation"].tolist() == ["café owner"]


def test_recbole_subset_and_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.user", "zip_code:token\tuser_id:token\tage:float\n02139\t7\t31.0\n\t8\t\n")
    assert _rows(load_users(path)) == [(7, 31, "", "", "02139"), (8, 0, "", "", "")]
    with pytest.raises(DataError, match=r"line 1: header .* has no user id column"):
        load_users(_write(tmp_path / "y.user", "age:float\tgender:token\n3\tF\n"))
    with pytest.raises(DataError, match=r"no users \(only a header\)"):
        load_users(_write(tmp_path / "z.user", "user_id:token\tage:float\n"))


def test_csv_profiles(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", 'userId,occupation,Gender,zip\n1,"sales, marketing",f,02139\n\n2,,,\n')
    assert _rows(load_users(path)) == [(1, 0, "F", "sales, marketing", "02139"), (2, 0, "", "", "")]
    with pytest.raises(DataError, match=r"p2.csv: line 4: expected 3 ','-separated fields, found 2"):
        load_users(_write(tmp_path / "p2.csv", "userId,zip,gender\n1,02139,F\n\n2,\n"))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("u.user", "1|24|M|technician|85711\n\n2|53|F|other\n", r"line 3: expected 5 '\|'-separated fields, found 4"),
        ("u.user", "1|24|M|technician|85711|x\n", r"line 1: expected 5 '\|'-separated fields, found 6"),
        ("u.user", "1|24|M|technician|85711\nx2|53|F|other|94043\n", r"line 2: field 'user' must be an integer, got 'x2'"),
        ("u.user", "|24|M|technician|85711\n", r"line 1: field 'user' must be an integer, got ''"),
        ("u.user", "1|24|M|a|1\n2|24|M|a|1\n\n1|30|F|b|2\n", r"line 4: duplicate user id 1 \(first at line 1\)"),
        ("users.dat", "1::F::1::10::48067\n2::M::56::16\n", r"line 2: expected 5 '::'-separated fields, found 4"),
        ("users.dat", "1.5::F::1::10::48067\n", r"line 1: field 'user' must be an integer, got '1.5'"),
        ("users.dat", "1::F::1::10::1\n1::M::1::10::1\n", r"line 2: duplicate user id 1 \(first at line 1\)"),
        ("b.user", "user_id:token\tage:float\n1\t24\n2\n", r"line 3: expected 2 '\\t'-separated fields, found 1"),
        ("b.user", "user_id:token\tage:float\n1\t24\n\n1\t30\n", r"line 4: duplicate user id 1 \(first at line 2\)"),
        ("b.csv", "userId,age\n1,24\nabc,3\n", r"line 3: field 'user' must be an integer, got 'abc'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(DataError, match=message) as info:
        load_users(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_users(tmp_path / "nope.user")
    with pytest.raises(DataError, match="empty file"):
        load_users(_write(tmp_path / "u.user", "\n\n"))


def test_many_users_read_vectorized(tmp_path: Path) -> None:
    n = 200_000
    ids = np.arange(1, n + 1)
    lines = pd.Series(ids).astype(str) + "::M::25::" + pd.Series(ids % 23).astype(str) + "::0" + pd.Series(ids).astype(str)
    path = _write(tmp_path / "users.dat", "\n".join(lines) + "\n")
    df = load_users(path)
    assert len(df) == n and df["zip"].iat[0] == "01" and df["occupation"].iat[21] == ""  # code 21: unknown
    assert (df["age"] == 25).all()


def test_registry_users_files(tmp_path: Path) -> None:
    assert (DATASETS["ml-100k"].users_file, DATASETS["ml-100k"].users_format) == ("u.user", "grouplens")
    assert (DATASETS["ml-1m"].users_file, DATASETS["ml-1m"].users_format) == ("users.dat", "dat")
    for name in ("ml-latest-small", "ml-25m"):
        assert DATASETS[name].users_file is None and dataset_users_file(name, tmp_path) is None
    for spec in DATASETS.values():
        if spec.users_file is not None:
            assert spec.users_file in spec.files  # fetch checks it is there
    assert dataset_users_file("ml-1m", tmp_path) == tmp_path / "ml-1m" / "users.dat"
    assert detect_format(FIX / "users.dat", "users") == DATASETS["ml-1m"].users_format


def test_fetched_ml100k_users() -> None:
    """The u.user `movierec data fetch ml-100k` wrote into the checkout's data/, when there is one."""
    path = Path(__file__).resolve().parents[2] / "data" / "ml-100k" / "u.user"
    if not path.is_file():
        pytest.skip("no data/ml-100k (run `movierec data fetch ml-100k --dest data`)")
    df = load_users(path)
    assert len(df) == 943 and df["user"].tolist() == list(range(1, 944))
    assert set(df["gender"]) == {"F", "M"} and df["age"].between(7, 73).all()
    assert df["occupation"].nunique() == 21 and (df["zip"].str.len() > 0).all()


# ------------------------------------------------------------------------------------------------ the CLI


def _train_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    from movierec.cli import build_parser

    return build_parser().parse_args(["train", "--out", str(tmp_path / "art"), *extra])


def test_train_users_argument(tmp_path: Path) -> None:
    from movierec.cli.train_cmd import _forwarded_args, training_profiles

    args = _train_args(tmp_path, "--train", "x.data", "--users", str(FIX / "users.dat"))
    frame = training_profiles(args)
    assert frame is not None and _rows(frame)[0] == (1, 16, "F", "k-12 student", "48067")
    assert ["--users", str(FIX / "users.dat")] == _forwarded_args(args)[2:4]  # every rank of --nproc gets it
    assert training_profiles(_train_args(tmp_path, "--train", "x.data")) is None
    # --dataset: that data set's users file under --data-dir; --users wins; none for ml-latest
    data = tmp_path / "data"
    (data / "ml-100k").mkdir(parents=True)
    (data / "ml-100k" / "u.user").write_bytes((FIX / "u.user").read_bytes())
    frame = training_profiles(_train_args(tmp_path, "--dataset", "ml-100k", "--data-dir", str(data)))
    assert frame is not None and len(frame) == 5
    frame = training_profiles(_train_args(tmp_path, "--dataset", "ml-100k", "--data-dir", str(data), "--users",
                                          str(FIX / "ml.user")))  # fmt: skip
    assert frame is not None and len(frame) == 3
    assert training_profiles(_train_args(tmp_path, "--dataset", "ml-latest-small", "--data-dir", str(data))) is None


def test_train_passes_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train --users` hands load_users' frame to run_training(profiles=)."""
    import movierec.trainer.pipeline as pipeline
    from movierec.cli import main

    seen: dict[str, Any] = {}

    def fake_run_training(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "run_training", fake_run_training)
    train = _write(tmp_path / "train.data", "1\t1\t5\t1\n2\t1\t4\t2\n3\t2\t3\t3\n")
    with pytest.raises(SystemExit):
        main(["train", "--train", str(train), "--users", str(FIX / "u.user"), "--preset", "popular",
              "--out", str(tmp_path / "art"), "--quiet"])  # fmt: skip
    pd.testing.assert_frame_equal(seen["profiles"], load_users(FIX / "u.user"))


def test_train_writes_profiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from movierec.cli import main

    rows = [f"{u}\t{i}\t{1 + (u * i) % 5}\t{u * 100 + i}" for u in range(1, 6) for i in range(1, 9) if (u + i) % 3]
    train = _write(tmp_path / "train.data", "\n".join(rows) + "\n")
    out = tmp_path / "art"
    assert main(["train", "--train", str(train), "--users", str(FIX / "u.user"), "--preset", "popular",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    stored = pd.read_parquet(out / "profiles.parquet")
    assert stored["user"].tolist() == [1, 2, 3, 4, 5]
    assert stored.set_index("user").loc[2, ["age", "gender", "occupation", "zip"]].tolist() == [53, "F", "other", "94043"]
    bad = _write(tmp_path / "bad.user", "1|24|M|technician|85711\n1|30|F|other|1\n")
    assert main(["train", "--train", str(train), "--users", str(bad), "--preset", "popular",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2  # fmt: skip
    assert "bad.user: line 2: duplicate user id 1 (first at line 1)" in capsys.readouterr().err
