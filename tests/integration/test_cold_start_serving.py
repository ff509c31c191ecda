"""Cold start through a real server, with raw gRPC stubs: user profiles on RatingsQuery, movies added while
serving (UpsertMovies) in every RPC, their persistence across restarts and hot swaps, and the token rule."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from movierec.v1 import bulk_pb2 as bulk
from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types

NEW_ID = 10_001  # not in the tiny catalog (ids 1..80)
TOKEN = "upsert-token-0123456789abcdef"


@pytest.fixture()
def stubs() -> Iterator[Any]:
    """`stubs(server, token=None)` -> a RecommenderServiceStub on a channel closed after the test."""
    channels: list[grpc.Channel] = []

    def make(srv: Any) -> Any:
        ch = grpc.insecure_channel(srv.target)
        channels.append(ch)
        return pb_grpc.RecommenderServiceStub(ch)

    yield make
    for ch in channels:
        ch.close()


@pytest.fixture()
def cold(make_server: Any, cold_scorer: Any) -> Any:
    """A server on the cold-start model with an in-memory overlay (nothing written)."""
    return make_server(cold_scorer)


def refused(fn: Any, req: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        fn(req, timeout=30)
    return exc.value


def movie(movie_id: int, title: str, year: int = 0, genres: tuple[str, ...] = ()) -> types.Movie:
    return types.Movie(movie_id=movie_id, title=title, year=year, genres=list(genres))


def popular_order(scorer: Any) -> list[int]:
    """Most ratings first, then the highest mean rating, then the lowest id (computed from the history)."""
    h = scorer.history
    n = scorer.n_trained
    counts = np.bincount(h.indices, minlength=n)[:n]
    sums = np.bincount(h.indices, weights=h.values, minlength=n)[:n]
    means = np.where(counts > 0, sums / np.maximum(counts, 1), h.values.mean())
    ids = scorer.items.raw[:n]
    return ids[np.lexsort((ids, -means, -counts))].tolist()


PROFILE = types.UserProfile(age=25, gender="f", occupation="Student", zip_code="94110")
OTHER = types.UserProfile(age=67, gender="M", occupation="astronaut", zip_code="10001")  # unknown occupation


# -- profiles ------------------------------------------------------------------------------------------------


def test_profile_only_query_is_scored_from_the_profile(cold: Any, cold_scorer: Any, stubs: Any) -> None:
    stub = stubs(cold)
    predict = [int(m) for m in cold_scorer.items.raw[:4]]
    req = pb.RecommendForRatingsRequest(
        queries=[
            pb.RatingsQuery(profile=PROFILE, predict_movie_ids=predict),
            pb.RatingsQuery(predict_movie_ids=predict),  # neither ratings nor profile
            pb.RatingsQuery(profile=OTHER, predict_movie_ids=predict),
            pb.RatingsQuery(profile=types.UserProfile(), predict_movie_ids=predict),  # set, but nothing given
        ],
        k=10,
    )
    res = stub.RecommendForRatings(req, timeout=30).results
    popular = popular_order(cold_scorer)[:10]
    lists = [list(r.recommendations.movie_ids) for r in res]
    assert lists[1] == popular and lists[3] == popular  # no profile given: the most popular movies
    assert lists[0] != popular and lists[2] != popular and len(lists[0]) == 10
    assert list(res[0].recommendations.scores) != list(res[2].recommendations.scores)  # the profile counts
    means = [list(r.predictions.ratings) for r in res]
    assert means[1] == means[3]  # the movies' mean ratings
    assert means[0] != means[1] and means[2] != means[0]
    scale = cold_scorer.rating_scale
    assert all(scale.min <= x <= scale.max for x in means[0] + means[2])
    again = stub.RecommendForRatings(req, timeout=30).results
    assert [list(r.recommendations.movie_ids) for r in again] == lists  # deterministic


def test_profile_with_ratings_and_in_streams(cold: Any, cold_scorer: Any, stubs: Any) -> None:
    stub = stubs(cold)
    rated = [int(m) for m in cold_scorer.items.raw[[0, 5, 9]]]
    vec = types.RatingVector(movie_ids=rated, ratings=[5.0, 4.0, 1.0])
    req = pb.RecommendForRatingsRequest(
        queries=[pb.RatingsQuery(ratings=vec), pb.RatingsQuery(ratings=vec, profile=PROFILE)], k=8
    )
    unary = stub.RecommendForRatings(req, timeout=30)
    plain, with_profile = (list(r.recommendations.movie_ids) for r in unary.results)
    assert not set(rated) & set(plain) and not set(rated) & set(with_profile)  # rated movies never come back
    assert plain != with_profile  # the profile sends the row to the side models
    answers = list(
        stub.StreamRecommend(
            iter([pb.StreamRecommendRequest(request_id="p", recommend_for_ratings=req)]), timeout=30
        )
    )
    assert len(answers) == 1 and answers[0].WhichOneof("result") == "recommend_for_ratings"
    streamed = answers[0].recommend_for_ratings.results
    assert [list(r.recommendations.movie_ids) for r in streamed] == [plain, with_profile]


def test_profiles_on_a_model_without_side_models_are_accepted(server: Any, scorer: Any, stubs: Any) -> None:
    """profile_aware false: a profile is validated, then only the ratings count."""
    stub = stubs(server)
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).model.side_information
    assert not info.profile_aware and not info.metadata_aware and info.n_trained_movies == len(scorer.items)
    res = stub.RecommendForRatings(
        pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery(profile=PROFILE), pb.RatingsQuery()], k=5),
        timeout=30,
    ).results
    assert list(res[0].recommendations.movie_ids) == list(res[1].recommendations.movie_ids)
    err = refused(
        stub.RecommendForRatings,
        pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery(profile=types.UserProfile(age=121))], k=5),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (types.UserProfile(age=130), "queries[1].profile.age: 130 is out of range; allowed 1..120, or 0 for not given"),
        (types.UserProfile(age=-3), "queries[1].profile.age: -3 is out of range"),
        (types.UserProfile(gender="X"), "queries[1].profile.gender: 'X' is not a gender code; allowed \"F\" or \"M\""),
        (types.UserProfile(zip_code="1" * 17), "queries[1].profile.zip_code: 17 characters; at most 16"),
    ],
)
def test_bad_profiles_are_invalid_argument(cold: Any, stubs: Any, profile: Any, message: str) -> None:
    stub = stubs(cold)
    req = pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery(profile=PROFILE), pb.RatingsQuery(profile=profile)], k=3)
    err = refused(stub.RecommendForRatings, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(message), err.details()


def test_model_info_side_information(cold: Any, cold_scorer: Any, stubs: Any) -> None:
    resp = stubs(cold).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    side = resp.model.side_information
    assert side.profile_aware and side.metadata_aware
    assert list(side.occupations) == cold_scorer.features.values("occupation") and "student" in side.occupations
    assert list(side.genres) == cold_scorer.features.values("genre") and "Comedy" in side.genres
    assert (side.n_trained_movies, side.n_added_movies) == (cold_scorer.n_trained, 0)
    assert resp.limits.max_movies_per_upsert == 1000


# -- movies added while serving --------------------------------------------------------------------------------


def test_an_added_movie_serves_in_every_rpc(cold: Any, cold_scorer: Any, stubs: Any) -> None:
    stub = stubs(cold)
    n = cold_scorer.n_trained
    trained = int(cold_scorer.items.raw[4])
    resp = stub.UpsertMovies(
        pb.UpsertMoviesRequest(
            movies=[
                movie(NEW_ID, "  A New Film  ", 2024, ("Comedy", "Not A Genre The Model Knows")),
                movie(trained, "Renamed Classic", 1999, ("Drama",)),
            ]
        ),
        timeout=60,
    )
    assert (resp.added, resp.updated, resp.n_movies) == (1, 1, n + 1)
    assert resp.model_version == cold_scorer.info.version  # the model is unchanged

    # GetMovies: by id, and the whole catalog in ascending id order
    got = stub.GetMovies(pb.GetMoviesRequest(movie_ids=[NEW_ID, trained]), timeout=30).movies
    assert (got[0].title, got[0].year, list(got[0].genres)) == ("A New Film", 2024, ["Comedy", "Not A Genre The Model Knows"])
    assert (got[1].title, got[1].year, list(got[1].genres)) == ("Renamed Classic", 1999, ["Drama"])
    every = stub.GetMovies(pb.GetMoviesRequest(), timeout=30).movies
    ids = [m.movie_id for m in every]
    assert ids == sorted(ids) and len(ids) == n + 1 and ids[-1] == NEW_ID
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert info.model.n_items == n + 1 and info.model.side_information.n_added_movies == 1
    assert info.limits.max_k == n + 1

    # predicted, and usable in a rating vector
    some = [int(m) for m in cold_scorer.items.raw[:3]]
    vec = types.RatingVector(movie_ids=[*some, NEW_ID], ratings=[5.0, 3.0, 1.0, 5.0])
    res = stub.RecommendForRatings(
        pb.RecommendForRatingsRequest(
            queries=[
                pb.RatingsQuery(ratings=types.RatingVector(movie_ids=some, ratings=[5, 3, 1]), predict_movie_ids=[NEW_ID]),
                pb.RatingsQuery(ratings=vec, predict_movie_ids=[NEW_ID, some[0]]),
                pb.RatingsQuery(profile=PROFILE, predict_movie_ids=[NEW_ID]),
            ],
            k=n + 1,
            include_titles=True,
        ),
        timeout=30,
    ).results
    scale = cold_scorer.rating_scale
    for r in res:
        assert NEW_ID in r.predictions.movie_ids
        assert all(scale.min <= x <= scale.max for x in r.predictions.ratings)
    assert NEW_ID in res[0].recommendations.movie_ids and NEW_ID in res[2].recommendations.movie_ids
    assert NEW_ID not in res[1].recommendations.movie_ids  # rated in that vector: never recommended
    pos = list(res[0].recommendations.movie_ids).index(NEW_ID)
    assert res[0].recommendations.titles[pos] == "A New Film"

    # forced into a list with include_movie_ids, in every recommending RPC
    user = int(cold_scorer.users.raw[0])
    rec = stub.Recommend(pb.RecommendRequest(user_ids=[user], k=1, include_movie_ids=[NEW_ID], include_titles=True), timeout=30)
    assert list(rec.recommendations[0].movie_ids) == [NEW_ID] and list(rec.recommendations[0].titles) == ["A New Film"]
    everything = stub.Recommend(pb.RecommendRequest(user_ids=[user], k=n + 1), timeout=30).recommendations[0]
    assert NEW_ID in everything.movie_ids  # a candidate among all the movies
    forced = pb.RecommendForRatingsRequest(
        queries=[pb.RatingsQuery(ratings=types.RatingVector(movie_ids=some, ratings=[5, 3, 1])), pb.RatingsQuery(profile=PROFILE)],
        k=1,
        include_movie_ids=[NEW_ID, some[0]],
    )
    assert [list(r.recommendations.movie_ids) for r in stub.RecommendForRatings(forced, timeout=30).results][1] in ([NEW_ID], [some[0]])
    only_new = pb.RecommendForRatingsRequest(queries=forced.queries, k=1, include_movie_ids=[NEW_ID])
    assert [list(r.recommendations.movie_ids) for r in stub.RecommendForRatings(only_new, timeout=30).results] == [[NEW_ID]] * 2
    answers = list(
        stub.StreamRecommend(
            iter(
                [
                    pb.StreamRecommendRequest(request_id="r", recommend=pb.RecommendRequest(user_ids=[user], k=1, include_movie_ids=[NEW_ID])),
                    pb.StreamRecommendRequest(request_id="v", recommend_for_ratings=only_new),
                ]
            ),
            timeout=30,
        )
    )
    by_id = {a.request_id: a for a in answers}
    assert list(by_id["r"].recommend.recommendations[0].movie_ids) == [NEW_ID]
    assert [list(r.recommendations.movie_ids) for r in by_id["v"].recommend_for_ratings.results] == [[NEW_ID]] * 2

    # ScoreAll: a candidate for every user (k = the whole catalog)
    seen = 0
    for chunk in stub.ScoreAll(bulk.ScoreAllRequest(k=n + 1, chunk_users=50), timeout=60):
        movies = np.frombuffer(chunk.movie_ids, dtype="<i8").reshape(chunk.n_users, chunk.k)
        assert (movies == NEW_ID).any(axis=1).all()
        seen += chunk.n_users
    assert seen == len(cold_scorer.users)


def test_added_movies_without_side_models_rank_after_trained_ones(
    make_server: Any, scorer: Any, stubs: Any
) -> None:
    """metadata_aware false: added movies are candidates after every trained movie."""
    srv = make_server(scorer)
    stub = stubs(srv)
    n = len(scorer.items)
    assert stub.UpsertMovies(pb.UpsertMoviesRequest(movies=[movie(NEW_ID, "Extra")]), timeout=60).added == 1
    user = int(scorer.users.raw[0])
    lst = stub.Recommend(pb.RecommendRequest(user_ids=[user], k=n + 1), timeout=30).recommendations[0]
    assert list(lst.movie_ids)[-1] == NEW_ID
    assert list(stub.RecommendForRatings(
        pb.RecommendForRatingsRequest(queries=[pb.RatingsQuery()], k=1, include_movie_ids=[NEW_ID]), timeout=30
    ).results[0].recommendations.movie_ids) == [NEW_ID]  # fmt: skip
    pred = stub.RecommendForRatings(
        pb.RecommendForRatingsRequest(
            queries=[pb.RatingsQuery(ratings=types.RatingVector(movie_ids=[NEW_ID], ratings=[4.0]), predict_movie_ids=[NEW_ID])]
        ),
        timeout=30,
    ).results[0]
    assert len(pred.predictions.ratings) == 1


@pytest.mark.parametrize(
    ("movies", "message"),
    [
        ([], "movies: empty request"),
        ([movie(NEW_ID, "a"), movie(NEW_ID + 1, "b"), movie(NEW_ID + 2, "c")], "movies: 3 entries in one call; the limit is 2"),
        ([movie(NEW_ID, "a"), movie(0, "b")], "movies[1].movie_id: 0; a movie id must be > 0"),
        ([movie(-4, "a")], "movies[0].movie_id: -4"),
        ([movie(NEW_ID, "a"), movie(NEW_ID, "b")], "movies[1].movie_id: duplicate movie id 10001 (also movies[0])"),
        ([movie(NEW_ID, "a"), movie(NEW_ID + 1, "  ")], "movies[1].title: empty; give the movie's title"),
        ([movie(NEW_ID, "a", 1869)], "movies[0].year: 1869 is out of range; allowed 1870..2100, or 0 for unknown"),
        ([movie(NEW_ID, "a", 2101)], "movies[0].year: 2101 is out of range"),
        ([movie(NEW_ID, "x" * 1001)], "movies[0].title: 1001 characters; at most 1000"),
    ],
)
def test_bad_upserts_are_invalid_argument_and_change_nothing(
    make_server: Any, cold_scorer: Any, stubs: Any, movies: list[Any], message: str
) -> None:
    srv = make_server(cold_scorer, max_movies_per_upsert=2)
    stub = stubs(srv)
    err = refused(stub.UpsertMovies, pb.UpsertMoviesRequest(movies=movies))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(message), err.details()
    assert len(stub.GetMovies(pb.GetMoviesRequest(), timeout=30).movies) == cold_scorer.n_trained
    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).limits.max_movies_per_upsert == 2


def test_upsert_edge_values_are_accepted(cold: Any, cold_scorer: Any, stubs: Any) -> None:
    stub = stubs(cold)
    resp = stub.UpsertMovies(
        pb.UpsertMoviesRequest(movies=[movie(NEW_ID, "Unknown year"), movie(NEW_ID + 1, "Old", 1870), movie(2**62, "Big id", 2100)]),
        timeout=60,
    )
    assert (resp.added, resp.updated) == (3, 0)
    again = stub.UpsertMovies(pb.UpsertMoviesRequest(movies=[movie(NEW_ID, "Known year", 2001)]), timeout=60)
    assert (again.added, again.updated, again.n_movies) == (0, 1, cold_scorer.n_trained + 3)
    got = stub.GetMovies(pb.GetMoviesRequest(movie_ids=[NEW_ID, 2**62]), timeout=30).movies
    assert [(m.title, m.year) for m in got] == [("Known year", 2001), ("Big id", 2100)]


def test_concurrent_upserts_are_serialized(cold: Any, cold_scorer: Any, stubs: Any) -> None:
    stub = stubs(cold)
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            stub.UpsertMovies(pb.UpsertMoviesRequest(movies=[movie(NEW_ID + i, f"Film {i}", 2000 + i)]), timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    ids = [m.movie_id for m in stub.GetMovies(pb.GetMoviesRequest(), timeout=30).movies]
    assert ids[-8:] == [NEW_ID + i for i in range(8)] and len(ids) == cold_scorer.n_trained + 8


def test_upsert_needs_the_token(make_server: Any, cold_scorer: Any, stubs: Any, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    srv = make_server(cold_scorer, auth_token_file=str(tokens))
    stub = stubs(srv)
    req = pb.UpsertMoviesRequest(movies=[movie(NEW_ID, "Secret film")])
    for metadata in (None, [("authorization", "Bearer wrong-token-0123456789")]):
        with pytest.raises(grpc.RpcError) as exc:
            stub.UpsertMovies(req, timeout=30, metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    auth = [("authorization", f"Bearer {TOKEN}")]
    assert len(stub.GetMovies(pb.GetMoviesRequest(), timeout=30, metadata=auth).movies) == cold_scorer.n_trained
    assert stub.UpsertMovies(req, timeout=30, metadata=auth).added == 1


# -- persistence ---------------------------------------------------------------------------------------------


def test_a_restart_keeps_added_movies(cold_scorer: Any, server_thread: Any, stubs: Any, tmp_path: Path) -> None:
    path = tmp_path / "served.added-movies.json"
    first = server_thread(cold_scorer, catalog_overlay=str(path))
    try:
        stub = stubs(first)
        trained = int(cold_scorer.items.raw[0])
        stub.UpsertMovies(
            pb.UpsertMoviesRequest(movies=[movie(NEW_ID, "Kept", 2020, ("Drama",)), movie(trained, "New Name")]), timeout=60
        )
    finally:
        first.close()
    stored = json.loads(path.read_text())
    assert [m["movie_id"] for m in stored["added"]] == [NEW_ID] and [m["movie_id"] for m in stored["updated"]] == [trained]
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind
    second = server_thread(cold_scorer, catalog_overlay=str(path))
    try:
        stub = stubs(second)
        got = stub.GetMovies(pb.GetMoviesRequest(movie_ids=[NEW_ID, trained]), timeout=30).movies
        assert [(m.title, m.year, list(m.genres)) for m in got] == [("Kept", 2020, ["Drama"]), ("New Name", 0, [])]
        user = int(cold_scorer.users.raw[1])
        rec = stub.Recommend(pb.RecommendRequest(user_ids=[user], k=1, include_movie_ids=[NEW_ID]), timeout=30)
        assert list(rec.recommendations[0].movie_ids) == [NEW_ID]
    finally:
        second.close()


def test_a_corrupt_overlay_refuses_to_start_with_one_line(tiny_cold_artifact: Path, tmp_path: Path) -> None:
    path = tmp_path / "added-movies.json"
    path.write_text('{"format": "movierec-catalog-overlay", "format_version": 1, "added": [{"movie_id": 5')
    out = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "serve", "--artifact", str(tiny_cold_artifact), "--port", "0",
         "--device", "cpu", "--catalog-overlay", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    errors = [x for x in out.stderr.splitlines() if "error:" in x]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"catalog overlay {path}: not valid JSON" in errors[0], errors


@pytest.fixture(scope="module")
def retrained_with_new_movie(
    tmp_path_factory: pytest.TempPathFactory, tiny_ratings: Any, tiny_profiles: Any, build_cold: Any
) -> Path:
    """The tiny data plus ratings of movie NEW_ID (and its catalog row): a retrained cold-start artifact whose
    trained catalog includes a movie that was added while serving."""
    train, test, catalog = tiny_ratings
    users = train["user"].drop_duplicates().to_numpy()[:30]
    extra = pd.DataFrame({"user": users, "item": NEW_ID, "rating": 4.0, "timestamp": 890_000_000})
    row = pd.DataFrame({"item": [NEW_ID], "title": ["A New Film (as trained)"], "year": [2024], "genres": ["Comedy"]})
    return build_cold(
        pd.concat([train, extra], ignore_index=True), test, pd.concat([catalog, row], ignore_index=True), tiny_profiles,
        tmp_path_factory.mktemp("retrained") / "with-new-movie", seed=1,
    )  # fmt: skip


def publish(src: Path, versions: Path, name: str) -> Path:
    tmp = versions / f".{name}.incoming"
    shutil.copytree(src, tmp)
    tmp.rename(versions / name)
    (versions / name / "manifest.json").touch()
    return versions / name


def test_hot_swap_reapplies_and_supersedes_the_overlay(
    tiny_cold_artifact: Path, retrained_with_new_movie: Path, server_thread: Any, stubs: Any, tmp_path: Path
) -> None:
    from movierec.core.scoring import Scorer
    from movierec.server.config import ServerSettings
    from movierec.server.model_manager import ModelManager

    versions = tmp_path / "models"
    versions.mkdir()
    publish(tiny_cold_artifact, versions, "v1")
    settings = ServerSettings(artifact=versions)
    overlay = settings.overlay_path()
    assert overlay == versions / "added-movies.json"  # a versions folder keeps it inside, beside the versions
    v1 = Scorer.load(versions / "v1", "cpu")
    srv = server_thread(v1, artifact=versions, catalog_overlay=str(overlay))
    try:
        manager = ModelManager(versions, device="cpu")
        manager.attach(srv.server.engine)
        stub = stubs(srv)
        trained = int(v1.items.raw[2])
        other_new = NEW_ID + 7
        stub.UpsertMovies(
            pb.UpsertMoviesRequest(
                movies=[movie(NEW_ID, "A New Film"), movie(other_new, "Still New"), movie(trained, "Fixed Title")]
            ),
            timeout=60,
        )
        # a second version of the same catalog: the overlay is re-applied as it is
        publish(tiny_cold_artifact, versions, "v1-again")  # same content: no swap
        assert srv.run(manager.reload()).result(120) is False
        publish(retrained_with_new_movie, versions, "v2")  # trained on NEW_ID: a superset of the catalog
        assert srv.run(manager.reload()).result(120) is True, manager.stats.last_error
        v2 = Scorer.load(retrained_with_new_movie, "cpu")
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).model
        assert info.version == v2.info.version
        assert info.side_information.n_trained_movies == v1.n_trained + 1
        assert info.side_information.n_added_movies == 1 and info.n_items == v1.n_trained + 2
        got = stub.GetMovies(pb.GetMoviesRequest(movie_ids=[NEW_ID, other_new, trained]), timeout=30).movies
        # NEW_ID is superseded by the retrained artifact's own metadata; the title fix of a trained movie stays
        assert [m.title for m in got] == ["A New Film (as trained)", "Still New", "Fixed Title"]
        stored = json.loads(overlay.read_text())
        assert [m["movie_id"] for m in stored["added"]] == [other_new]
        assert [m["movie_id"] for m in stored["updated"]] == [trained]
        user = int(v2.users.raw[0])
        rec = stub.Recommend(pb.RecommendRequest(user_ids=[user], k=1, include_movie_ids=[other_new]), timeout=30)
        assert list(rec.recommendations[0].movie_ids) == [other_new] and rec.model_version == v2.info.version
    finally:
        srv.close()
    # and a restart on the new version sees the same catalog
    again = server_thread(Scorer.load(versions / "v2", "cpu"), artifact=versions, catalog_overlay=str(overlay))
    try:
        got = stubs(again).GetMovies(pb.GetMoviesRequest(movie_ids=[other_new, trained]), timeout=30).movies
        assert [m.title for m in got] == ["Still New", "Fixed Title"]
    finally:
        again.close()


def test_restart_on_a_retrained_artifact_supersedes_added_movies(
    retrained_with_new_movie: Path, server_thread: Any, stubs: Any, tmp_path: Path
) -> None:
    """The artifact was retrained while the server was down: the overlay is rebased at start (and rewritten)."""
    from movierec.core.features import MovieTable
    from movierec.core.scoring import Scorer
    from movierec.server.catalog_overlay import Overlay, OverlayFile

    path = tmp_path / "art.added-movies.json"
    added = MovieTable(np.array([NEW_ID, NEW_ID + 1]), ["Old name", "Other"], np.array([0, 0]), [[], []])
    OverlayFile(path).save(Overlay(added, MovieTable.empty()))
    srv = server_thread(Scorer.load(retrained_with_new_movie, "cpu"), catalog_overlay=str(path))
    try:
        got = stubs(srv).GetMovies(pb.GetMoviesRequest(movie_ids=[NEW_ID, NEW_ID + 1]), timeout=30).movies
        assert [m.title for m in got] == ["A New Film (as trained)", "Other"]
    finally:
        srv.close()
    assert [m["movie_id"] for m in json.loads(path.read_text())["added"]] == [NEW_ID + 1]


def test_a_model_that_drops_a_served_movie_is_refused(
    make_server: Any, cold_scorer: Any, build_cold: Any, tmp_path: Path, tiny_ratings: Any, tiny_profiles: Any, stubs: Any
) -> None:
    from movierec.server.model_manager import ModelManager

    versions = tmp_path / "models"
    versions.mkdir()
    srv = make_server(cold_scorer, artifact=versions)
    manager = ModelManager(versions, device="cpu")
    manager.attach(srv.server.engine)
    stub = stubs(srv)
    dropped = int(cold_scorer.items.raw[-1])
    stub.UpsertMovies(pb.UpsertMoviesRequest(movies=[movie(dropped, "Renamed"), movie(NEW_ID, "Added")]), timeout=60)
    train, test, catalog = tiny_ratings
    smaller = build_cold(train[train["item"] != dropped], test, catalog, tiny_profiles, tmp_path / "smaller")
    publish(smaller, versions, "v2")
    assert srv.run(manager.reload()).result(120) is False
    # a trained movie may not fall back to metadata alone, even one whose metadata was updated
    assert f"lacks 1 of the {cold_scorer.n_trained + 1} movies served now (ids {dropped})" in manager.stats.last_error
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).model
    assert info.version == cold_scorer.info.version and info.n_items == cold_scorer.n_trained + 1
