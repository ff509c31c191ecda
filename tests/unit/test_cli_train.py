"""The trainer's command line: the contract outside tools rely on, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from movierec.cli import main


def _write_udata(df: pd.DataFrame, path: Path) -> Path:
    df[["user", "item", "rating", "timestamp"]].astype({"rating": int}).to_csv(path, sep="\t", header=False, index=False)
    return path


@pytest.fixture()
def files(tiny_ratings, tmp_path: Path) -> tuple[Path, Path]:
    train, test, catalog = tiny_ratings
    movies = pd.DataFrame({"movieId": catalog["item"], "title": catalog["title"] + " (" + catalog["year"].astype(str) + ")",
                           "genres": catalog["genres"]})
    movies.to_csv(tmp_path / "movies.csv", index=False)
    return _write_udata(train, tmp_path / "train.data"), _write_udata(test, tmp_path / "test.data")


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_train_evaluate_predict_recommend(files, tmp_path: Path, capsys) -> None:
    train, test = files
    out = tmp_path / "art"
    assert main(["train", "--train", str(train), "--test", str(test), "--catalog", str(train.parent / "movies.csv"),
                 "--preset", "classic", "--epochs", "3",
                 "--device", "cpu", "--out", str(out), "--quiet", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_ratings"] > 0 and 0 < metrics["test_rmse"] < 3
    assert main(["evaluate", "--artifact", str(out), "--test", str(test), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["rmse"] == pytest.approx(metrics["test_rmse"], rel=1e-5)

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("1\t1\textra\n2\t3\tcolumns\n999999\t1\tx\n")
    assert main(["predict", "--artifact", str(out), "--pairs", str(pairs), "--out", str(tmp_path / "p.tsv")]) == 0
    pred = pd.read_csv(tmp_path / "p.tsv", sep="\t", header=None)
    assert pred.shape == (3, 3) and pred[2].between(1, 5).all()

    assert main(["recommend", "--artifact", str(out), "--user", "1", "-k", "3"]) == 0
    assert capsys.readouterr().out.count("Synthetic Movie") == 3
    assert main(["recommend", "--artifact", str(out), "--all", "-k", "4", "--out", str(tmp_path / "all.tsv")]) == 0
    recs = pd.read_csv(tmp_path / "all.tsv", sep="\t")
    assert list(recs.columns) == ["user_id", "rank", "movie_id", "score"]
    assert recs.groupby("user_id").size().max() == 4 and set(recs["rank"]) == {1, 2, 3, 4}


def test_bad_input_gets_one_line_errors(files, tmp_path: Path, capsys) -> None:
    train, test = files
    out = str(tmp_path / "x")
    assert main(["train", "--train", str(tmp_path / "missing"), "--out", out]) == 2
    assert "missing" in _error_line(capsys)
    assert main(["train", "--train", str(train), "--preset", "nope", "--out", out]) == 2
    assert "unknown preset" in _error_line(capsys)
    empty = tmp_path / "empty.data"
    empty.write_text("")
    assert main(["train", "--train", str(empty), "--out", out]) == 2
    assert "empty" in _error_line(capsys)
    bad = tmp_path / "bad.data"
    bad.write_text("1\t2\t9\t880000000\n")
    assert main(["train", "--train", str(bad), "--out", out]) == 2
    assert "rating" in _error_line(capsys)
    garbage = tmp_path / "garbage.data"
    garbage.write_text("hello world\nthis is not ratings\n")
    assert main(["train", "--train", str(garbage), "--out", out]) == 2
    _error_line(capsys)
    assert main(["evaluate", "--artifact", str(tmp_path / "nothing"), "--test", str(test)]) == 2
    assert "no such artifact" in _error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_unknown_user_is_a_one_line_error(tiny_artifact: Path, capsys) -> None:
    assert main(["recommend", "--artifact", str(tiny_artifact), "--user", "123456789"]) == 2
    assert "unknown user" in _error_line(capsys)


def test_console_script_exit_status_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "movierec.cli", "evaluate", "--artifact", str(tmp_path),
                           "--test", str(tmp_path / "t")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "not an artifact" in proc.stderr
