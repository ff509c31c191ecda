"""Cold start on the command line (no server): `--profile` parsing and its one-line errors, `catalog upsert`'s
CSV reading and its refusals, `query`'s argument checks, and the offline `recommend --profile` on an artifact."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from movierec.cli import CliError, build_parser, main
from movierec.cli.catalog_cmd import read_movies_csv
from movierec.cli.client_cmd import parse_profile, parse_ratings_pairs

NOWHERE = "127.0.0.1:1"  # nothing listens: a command that got this far would fail to connect


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback, no usage
    return err[0]


# -- --profile and --ratings text ------------------------------------------------------------------------------
def test_parse_profile() -> None:
    assert parse_profile("age=25,gender=f,occupation=student,zip=55105") == {
        "age": 25, "gender": "F", "occupation": "student", "zip_code": "55105"
    }  # fmt: skip
    assert parse_profile(" AGE = 7 , zip_code=02139,") == {"age": 7, "zip_code": "02139"}
    assert parse_profile("occupation=other") == {"occupation": "other"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agee=25", "unknown key 'agee'"),
        ("age=25,height=180", "unknown key 'height'"),
        ("age=twenty", "age must be an integer"),
        ("age=25.5", "age must be an integer"),
        ("age=0", "age must be in 1..120, got 0"),
        ("age=121", "age must be in 1..120, got 121"),
        ("gender=X", "gender must be F or M, got 'X'"),
        ("age=3,age=4", "'age' given twice"),
        ("zip=1,zip_code=2", "'zip_code' given twice"),
        ("student", "'student' is not KEY=VALUE"),
        ("occupation=", "'occupation' has no value"),
        (",", "no KEY=VALUE pairs"),
    ],
)
def test_parse_profile_errors(text: str, message: str) -> None:
    with pytest.raises(CliError, match=re.escape(message)) as info:
        parse_profile(text)
    assert str(info.value).startswith("--profile: ") and "\n" not in str(info.value)


def test_parse_ratings() -> None:
    assert parse_ratings_pairs("50:5, 1:4.5") == {50: 5.0, 1: 4.5}
    assert parse_ratings_pairs('{"50": 5, "1": 4}') == {50: 5.0, 1: 4.0}
    assert parse_ratings_pairs("") == {}
    for bad in ("50", "50:x", "x:5", "1:4,1:5", "[1, 2]", "{bad json"):
        with pytest.raises(CliError, match="--ratings must be movie:rating pairs"):
            parse_ratings_pairs(bad)


# -- query / catalog arguments (refused before any connection) --------------------------------------------------
def test_query_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    q = ["query", "--target", NOWHERE, "--timeout", "0.5"]
    assert main([*q, "--profile", "agee=25"]) == 2
    assert "unknown key 'agee'" in _error_line(capsys)
    assert main([*q, "--profile", "age=abc", "--ratings", "1:5"]) == 2
    assert "age must be an integer" in _error_line(capsys)
    assert main([*q, "--ratings", "1:5", "--profile", "gender=Q"]) == 2
    assert "gender must be F or M" in _error_line(capsys)
    assert main([*q, "--user", "1", "--profile", "age=3"]) == 2
    assert "one or the other" in _error_line(capsys)
    assert main(q) == 2
    assert "give --user ID, or --ratings and/or --profile" in _error_line(capsys)
    # a well-formed profile alone gets as far as the server (none here): the SDK's error, one line
    assert main([*q, "--profile", "age=25,gender=F"]) == 2
    line = _error_line(capsys)
    assert "UNAVAILABLE" in line or "DEADLINE_EXCEEDED" in line, line


def test_client_commands_take_token_and_tls_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["catalog", "upsert", "--target", "h:1", "--file", "m.csv", "--token", "t",
                              "--ca", "ca.pem", "--cert", "c.pem", "--key", "k.pem", "--batch-size", "10"])  # fmt: skip
    assert (args.target, args.file, args.token, args.ca, args.cert, args.key, args.batch_size) == (
        "h:1", Path("m.csv"), "t", "ca.pem", "c.pem", "k.pem", 10
    )
    for command in (["query", "--user", "1"], ["info"], ["health"]):
        args = parser.parse_args([*command, "--token", "t", "--tls"])
        assert args.token == "t" and args.tls


def test_cert_without_key_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--target", NOWHERE, "--cert", "c.pem"]) == 2
    assert "--cert and --key go together" in _error_line(capsys)


def test_read_movies_csv(tmp_path: Path) -> None:
    movielens = tmp_path / "movies.csv"
    movielens.write_text(
        'movieId,title,genres\n5000,"New Film, The (2024)",Comedy|Drama\n5001,Untitled,(no genres listed)\n'
    )
    assert read_movies_csv(movielens) == [
        {"movie_id": 5000, "title": "New Film, The (2024)", "year": 2024, "genres": ["Comedy", "Drama"]},
        {"movie_id": 5001, "title": "Untitled", "year": 0, "genres": []},
    ]
    ours = tmp_path / "ours.csv"
    ours.write_text("item,title,year,genres\n7,Seven (1995),,Crime\n8,Eight,2001,\n")
    assert read_movies_csv(ours) == [
        {"movie_id": 7, "title": "Seven (1995)", "year": 1995, "genres": ["Crime"]},
        {"movie_id": 8, "title": "Eight", "year": 2001, "genres": []},
    ]
    minimal = tmp_path / "minimal.csv"
    minimal.write_text("movie_id,title\n9,Nine\n")
    assert read_movies_csv(minimal) == [{"movie_id": 9, "title": "Nine", "year": 0, "genres": []}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("movie_id,title\n", "no movies (only a header)"),
        ("id,title\n1,a\n", "line 1: unknown column(s) 'id'"),
        ("title,genres\na,b\n", "line 1: no movie id column"),
        ("movie_id,item,title\n1,1,a\n", "line 1: several movie id columns (movie_id, item)"),
        ("movie_id,genres\n1,Comedy\n", "line 1: no title column"),
        ("movie_id,title\n1,a\nx,b\n", "line 3: movie_id 'x' is not an integer"),
        ("movie_id,title\n1,a\n2,b\n1,c\n", "line 4: duplicate movie id 1"),
        ("movie_id,title\n1,a\n2,\n", "line 3: empty title"),
        ("movie_id,title,year\n1,a,1999.5\n", "line 2: year '1999.5' is not an integer"),
        ('movie_id,title\n1,"unterminated\n', "not a valid CSV file"),
    ],
)
def test_catalog_upsert_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "movies.csv"
    path.write_text(content)
    assert main(["catalog", "upsert", "--target", NOWHERE, "--timeout", "0.5", "--file", str(path)]) == 2
    line = _error_line(capsys)
    assert line.startswith("movierec catalog: error: ") and message in line, line


def test_catalog_upsert_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "upsert", "--target", NOWHERE, "--file", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file" in _error_line(capsys)


def test_client_commands_need_no_torch(tmp_path: Path) -> None:
    """`catalog upsert` and `query --profile` run on the base install: with torch blocked they get as far as
    the (absent) server."""
    csv = tmp_path / "movies.csv"
    csv.write_text("movie_id,title\n9,Nine\n")
    run = "import sys\nsys.modules['torch'] = None\nfrom movierec.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    for argv in (["catalog", "upsert", "--file", str(csv)], ["query", "--profile", "age=30", "--ratings", "1:4"]):
        proc = subprocess.run([sys.executable, "-c", run, *argv, "--target", NOWHERE, "--timeout", "0.5"],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "UNAVAILABLE" in proc.stderr or "DEADLINE_EXCEEDED" in proc.stderr, proc.stderr


# -- offline recommend for a new user -------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["tiny_cold_artifact", "tiny_artifact"])
def artifact(request: pytest.FixtureRequest) -> Path:
    """An artifact with cold-start side models (profiles scored), and one without (profiles ignored)."""
    return Path(request.getfixturevalue(request.param))


@pytest.fixture(scope="module")
def scorer(artifact: Path) -> Any:
    from movierec.core.scoring import Scorer

    return Scorer.load(artifact, device="cpu")


def _listed(out: str) -> list[int]:
    return [int(m) for m in re.findall(r"\(movie (\d+), score", out)]


def _expected(scorer: Any, k: int, ratings: dict[int, float], profile: dict[str, Any] | None) -> list[int]:
    from movierec.core.features import Profiles
    from movierec.core.sparse import Csr

    idx = scorer.items.to_index(np.array(list(ratings), dtype=np.int64))
    inputs = Csr.from_coo(np.zeros(len(idx)), idx, list(ratings.values()), 1, scorer.n_items)
    profiles = Profiles.from_frame(pd.DataFrame([profile])) if profile is not None else None
    items, _ = scorer.topk(inputs, k, profiles=profiles)
    return scorer.items.raw[items[0][items[0] >= 0]].tolist()


def test_recommend_profile_offline(
    artifact: Path, scorer: Any, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    cold = request.node.callspec.params["artifact"] == "tiny_cold_artifact"
    assert scorer.info.profile_aware == cold
    base = ["recommend", "--artifact", str(artifact), "--device", "cpu", "-k", "5"]
    profile = {"age": 25, "gender": "F", "occupation": "student", "zip": "55105"}
    assert main([*base, "--profile", "age=25,gender=F,occupation=student,zip=55105"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("new user (age=25, gender=F, occupation=student, zip_code=55105): top 5")
    listed = _listed(captured.out)
    assert len(listed) == 5 and captured.out.count("Synthetic Movie") == 5  # titles printed
    assert listed == _expected(scorer, 5, {}, profile)
    popular = scorer.items.raw[np.argsort(-scorer.popularity, kind="stable")[:5]].tolist()
    if cold:
        assert "no cold-start models" not in captured.err
        assert main([*base, "--profile", "age=70,gender=M,occupation=retired,zip=90210"]) == 0
        other = _listed(capsys.readouterr().out)
        assert other == _expected(scorer, 5, {}, {"age": 70, "gender": "M", "occupation": "retired", "zip": "90210"})
        assert listed != popular or other != popular  # the profile counts
    else:  # profiles accepted, only ratings count: a profile alone gets the most popular movies
        assert "no cold-start models: the profile is ignored" in captured.err
        assert listed == popular

    rated = scorer.items.raw[:2].tolist()
    assert main([*base, "--profile", "age=25,gender=F,occupation=student", "--ratings", f"{rated[0]}:5,{rated[1]}:4"]) == 0
    out = capsys.readouterr().out
    assert "; 2 ratings): top 5" in out.splitlines()[0]
    with_ratings = _listed(out)
    assert with_ratings == _expected(scorer, 5, {rated[0]: 5.0, rated[1]: 4.0},
                                     {"age": 25, "gender": "F", "occupation": "student"})  # fmt: skip
    assert not set(rated) & set(with_ratings)  # rated movies are never recommended back
    if not cold:
        assert main([*base, "--ratings", f"{rated[0]}:5,{rated[1]}:4"]) == 0
        assert _listed(capsys.readouterr().out) == with_ratings  # only the ratings count


def test_recommend_new_user_errors(artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["recommend", "--artifact", str(artifact), "--device", "cpu"]
    assert main([*base, "--profile", "age=500"]) == 2
    assert "--profile: age must be in 1..120, got 500" in _error_line(capsys)
    assert main([*base, "--profile", "job=student"]) == 2
    assert "unknown key 'job'" in _error_line(capsys)
    assert main([*base, "--profile", "gender=F", "--user", "1"]) == 2
    assert "one or the other" in _error_line(capsys)
    assert main(base) == 2
    assert "give --user ID, --all, or --profile" in _error_line(capsys)
    assert main([*base, "--profile", "gender=F", "--ratings", "987654:5"]) == 2
    assert "movie id(s) [987654] are not in the artifact's catalog" in _error_line(capsys)
    assert main([*base, "--ratings", "1:3.5"]) == 2
    assert "3.5 (movie 1) is not on the model's rating scale" in _error_line(capsys)
