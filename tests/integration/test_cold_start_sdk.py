"""Cold start through the SDK and the CLI against a real server on an artifact with cold-start models:
profiles with and without ratings, movies added while serving (from a list, a DataFrame and a CSV file),
side information in model_info, and the errors a bad profile or movie gets."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from movierec.cli import main
from movierec.client import AsyncClient, Client, MovieRecError

TOKEN = "cold-start-token-0123456789abcdef"
STUDENT = {"age": 22, "gender": "F", "occupation": "student", "zip_code": "55105"}
RETIRED = {"age": 70, "gender": "M", "occupation": "retired", "zip": "90210"}


@pytest.fixture(scope="module")
def cold_scorer(tiny_cold_artifact: Path) -> Any:
    from movierec.core.scoring import Scorer

    s = Scorer.load(tiny_cold_artifact, device="cpu")
    s.warmup()
    return s


@pytest.fixture()
def cold_server(make_server: Any, cold_scorer: Any, tmp_path: Path) -> Any:
    """A server of its own per test (movies added by one test never reach another)."""
    return make_server(cold_scorer, catalog_overlay=str(tmp_path / "added-movies.json"))


@pytest.fixture()
def cold_client(cold_server: Any) -> Iterator[Client]:
    with Client(cold_server.target, timeout=30) as c:
        yield c


def _in_process(scorer: Any, k: int, ratings: dict[int, float], profile: dict[str, Any] | None) -> list[int]:
    from movierec.core.features import Profiles
    from movierec.core.sparse import Csr

    idx = scorer.items.to_index(np.array(list(ratings), dtype=np.int64))
    inputs = Csr.from_coo(np.zeros(len(idx)), idx, list(ratings.values()), 1, scorer.n_items)
    prof = None
    if profile is not None:
        row = {("zip" if key == "zip_code" else key): value for key, value in profile.items()}
        prof = Profiles.from_frame(pd.DataFrame([row]))
    items, _ = scorer.topk(inputs, k, profiles=prof)
    return scorer.items.raw[items[0][items[0] >= 0]].tolist()


def test_side_information(cold_client: Client, cold_scorer: Any) -> None:
    info = cold_client.model_info()
    si = info.side_information
    assert si is not None and si.profile_aware and si.metadata_aware
    assert set(si.occupations) == {"student", "engineer", "artist", "writer", "retired"}
    assert "Comedy" in si.genres and si.n_trained_movies == cold_scorer.n_trained and si.n_added_movies == 0
    assert info.limits.max_movies_per_upsert >= 1


def test_profile_with_and_without_ratings(cold_client: Client, cold_scorer: Any) -> None:
    popular = cold_client.recommend_for_ratings({}, k=5)[0].movie_ids.tolist()  # neither: most popular
    assert popular == _in_process(cold_scorer, 5, {}, None)
    for empty in ({}, None):
        rec = cold_client.recommend_for_ratings(empty, k=5, profile=STUDENT, titles=True)[0]
        assert rec.movie_ids.tolist() == _in_process(cold_scorer, 5, {}, STUDENT)
        assert rec.titles is not None and len(rec.titles) == 5
    rated = cold_scorer.items.raw[:3].tolist()
    ratings = {rated[0]: 5.0, rated[1]: 4.0, rated[2]: 1.0}
    both = cold_client.recommend_for_ratings(ratings, k=5, profile=RETIRED)[0].movie_ids.tolist()
    assert both == _in_process(cold_scorer, 5, ratings, RETIRED) and not set(both) & set(rated)
    # batched: one profile per query (None: no profile), ratings=None gives one query per profile
    recs = cold_client.recommend_for_ratings(None, k=5, profile=[STUDENT, None, RETIRED])
    assert [r.movie_ids.tolist() for r in recs] == [
        _in_process(cold_scorer, 5, {}, STUDENT), popular, _in_process(cold_scorer, 5, {}, RETIRED)
    ]
    recs = cold_client.recommend_for_ratings([ratings, {}], k=5, profile=[None, STUDENT])
    assert recs[0].movie_ids.tolist() == _in_process(cold_scorer, 5, ratings, None)
    assert recs[1].movie_ids.tolist() == _in_process(cold_scorer, 5, {}, STUDENT)
    # predictions from a profile alone lie on the model's scale
    pred = cold_client.predict(None, rated, profile=STUDENT)
    scale = cold_client.model_info().rating_scale
    assert scale is not None and pred.movie_ids.tolist() == rated
    assert ((pred.ratings >= scale.min) & (pred.ratings <= scale.max)).all()


def test_bad_profile_is_invalid_argument(cold_client: Client) -> None:
    for bad, field in (({"age": 200}, "age"), ({"gender": "X"}, "gender"), ({"age": -3, "gender": "F"}, "age")):
        with pytest.raises(MovieRecError) as err:
            cold_client.recommend_for_ratings({}, k=5, profile=bad)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and f"profile.{field}" in err.value.details
    with pytest.raises(MovieRecError) as err:  # in a batch: the error names the query
        cold_client.recommend_for_ratings(None, k=5, profile=[STUDENT, {"age": 121}])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "[1].profile.age" in err.value.details
    with pytest.raises(ValueError, match="unknown key 'job'"):  # refused before any call
        cold_client.recommend_for_ratings({}, k=5, profile={"job": "student"})


def test_upsert_movies_then_recommended(cold_client: Client, cold_scorer: Any) -> None:
    n = cold_scorer.n_trained
    first = cold_client.upsert_movies([
        {"movie_id": 5000, "title": "A Comedy Of Errors", "year": 2024, "genres": "Comedy|Romance"},
        {"movie_id": 5001, "title": "Space Drama", "year": 2023, "genres": ["Sci-Fi", "Drama"]},
    ])  # fmt: skip
    assert (first.added, first.updated, first.n_movies) == (2, 0, n + 2)
    assert first.model_version == cold_scorer.info.version
    trained_id = int(cold_scorer.items.raw[0])
    frame = pd.DataFrame(
        {"movieId": [5002, trained_id], "title": ["Frame Thriller", "Renamed"], "year": [np.nan, 1999],
         "genres": ["Thriller", "Drama"]}
    )  # fmt: skip
    second = cold_client.upsert_movies(frame)
    assert (second.added, second.updated, second.n_movies) == (1, 1, n + 3)

    movies = cold_client.movies([5000, 5001, 5002, trained_id])
    assert movies.titles == ["A Comedy Of Errors", "Space Drama", "Frame Thriller", "Renamed"]
    assert movies.years.tolist() == [2024, 2023, 0, 1999]
    assert movies.genres == [["Comedy", "Romance"], ["Sci-Fi", "Drama"], ["Thriller"], ["Drama"]]
    info = cold_client.model_info()
    assert info.n_items == n + 3 and info.side_information is not None
    assert info.side_information.n_added_movies == 3

    added = [5000, 5001, 5002]
    rec = cold_client.recommend_for_ratings({}, k=3, profile=STUDENT, include=added, titles=True)[0]
    assert sorted(rec.movie_ids.tolist()) == added and rec.titles is not None and "Space Drama" in rec.titles
    rated = {int(cold_scorer.items.raw[1]): 5.0}
    assert cold_client.recommend_for_ratings(rated, k=1, include=[5001])[0].movie_ids.tolist() == [5001]
    user = int(cold_scorer.users.raw[0])
    assert cold_client.recommend([user], k=2, include=[5000, 5002])[0].movie_ids.size == 2
    # an added movie may be rated and predicted like any other
    pred = cold_client.predict({5000: 5.0}, [5001, 5002], profile=STUDENT)
    assert pred.movie_ids.tolist() == [5001, 5002] and np.isfinite(pred.ratings).all()
    # upserting the same movie again updates it
    again = cold_client.upsert_movies([{"item": 5000, "title": "A Comedy Of Errors (Director's Cut)"}])
    assert (again.added, again.updated, again.n_movies) == (0, 1, n + 3)
    assert cold_client.movies([5000]).titles == ["A Comedy Of Errors (Director's Cut)"]


def test_bad_movies_are_invalid_argument(cold_client: Client) -> None:
    for bad in ([], [{"movie_id": 6000, "title": ""}], [{"movie_id": 6000, "title": "x", "year": 1500}],
                [{"movie_id": 0, "title": "x"}], [{"movie_id": 6000, "title": "x"}, {"movie_id": 6000, "title": "y"}]):  # fmt: skip
        with pytest.raises(MovieRecError) as err:
            cold_client.upsert_movies(bad)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT, bad
    with pytest.raises(ValueError, match="unknown key 'name'"):
        cold_client.upsert_movies([{"movie_id": 6000, "name": "x"}])
    assert cold_client.model_info().side_information.n_added_movies == 0  # type: ignore[union-attr]


def test_async_client(cold_server: Any, cold_scorer: Any) -> None:
    async def run() -> None:
        async with AsyncClient(cold_server.target, timeout=30) as c:
            info = await c.model_info()
            assert info.side_information is not None and info.side_information.profile_aware
            rec = await c.recommend_for_ratings(None, k=4, profile=STUDENT)
            assert rec[0].movie_ids.tolist() == _in_process(cold_scorer, 4, {}, STUDENT)
            res = await c.upsert_movies(pd.DataFrame({"movie_id": [7000], "title": ["Async"], "genres": ["Drama"]}))
            assert (res.added, res.updated) == (1, 0)
            assert (await c.movies([7000])).titles == ["Async"]
            with pytest.raises(MovieRecError) as err:
                await c.recommend_for_ratings({}, profile={"gender": "Q"})
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(run())


def test_cli_catalog_upsert_and_query_profile(
    make_server: Any, cold_scorer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    srv = make_server(cold_scorer, auth_token_file=str(tokens), catalog_overlay=str(tmp_path / "added.json"))
    csv = tmp_path / "movies.csv"
    csv.write_text('movieId,title,genres\n8000,"Cold Open, The (2025)",Comedy|Drama\n8001,Second (2024),Action\n')
    base = ["catalog", "upsert", "--target", srv.target, "--file", str(csv)]
    assert main(base) == 2  # no token
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main([*base, "--token", TOKEN, "--batch-size", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["movies"], out["added"], out["updated"], out["n_movies"]) == (2, 2, 0, cold_scorer.n_trained + 2)
    with Client(srv.target, token=TOKEN, timeout=30) as c:
        movies = c.movies([8000, 8001])
    assert movies.titles == ["Cold Open, The (2025)", "Second (2024)"] and movies.years.tolist() == [2025, 2024]

    q = ["query", "--target", srv.target, "--token", TOKEN, "-k", "2", "--json"]
    assert main([*q, "--profile", "age=22,gender=F,occupation=student,zip=55105", "--include", "8000", "8001"]) == 0
    listed = pd.read_json(io.StringIO(capsys.readouterr().out))
    assert sorted(listed["movie_id"].tolist()) == [8000, 8001]
    assert main([*q, "--profile", "age=200"]) == 2  # refused before the call
    assert "age must be in 1..120" in capsys.readouterr().err


def test_search_movies_finds_added_and_trained_titles(cold_client: Client, cold_scorer: Any) -> None:
    """SearchMovies through the SDK: equal to the stub's answer, added movies found at once, bad input refused."""
    from movierec.v1 import recommender_service_pb2 as pb
    from movierec.v1 import recommender_service_pb2_grpc as pb_grpc

    trained = cold_client.movies([int(cold_scorer.items.raw[3])])
    word = trained.titles[0].split()[0]
    got = cold_client.search_movies(word, limit=5)
    with grpc.insecure_channel(cold_client.target) as channel:
        stub = pb_grpc.RecommenderServiceStub(channel)
        want = stub.SearchMovies(pb.SearchMoviesRequest(query=word, limit=5), timeout=30)
    assert got.movie_ids.tolist() == [m.movie_id for m in want.movies] and got.n_matches == want.n_matches
    assert 0 < len(got) <= 5 and got.n_matches >= len(got) and got.model_version == want.model_version
    assert all(word.lower() in t.lower() for t in got.titles)
    assert got.to_pandas().columns.tolist() == ["movie_id", "title", "year", "genres"]

    cold_client.upsert_movies([{"movie_id": 9100, "title": "Zyxwv Quest", "year": 2025, "genres": ["Adventure"]}])
    found = cold_client.search_movies("zyxwv")
    assert (found.movie_ids.tolist(), found.n_matches, found.years.tolist()) == ([9100], 1, [2025])
    assert len(cold_client.search_movies("no such title anywhere qqq")) == 0
    for bad in ("   ", "x" * 201):
        with pytest.raises(MovieRecError) as err:
            cold_client.search_movies(bad)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT

    async def run() -> None:
        async with AsyncClient(cold_client.target, timeout=30) as c:
            assert (await c.search_movies("zyxwv")).movie_ids.tolist() == [9100]

    asyncio.run(run())
