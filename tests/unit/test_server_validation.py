"""Vectorized request validation and server settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.core.artifact import RatingScale
from movierec.core.features import MovieTable
from movierec.core.sparse import IdMap
from movierec.server import validation as v
from movierec.server.config import ServerSettings
from movierec.server.errors import ErrorCode, RequestError

ITEMS = IdMap.from_ids([10, 20, 30, 40])
USERS = IdMap.from_ids([1, 2, 3])
STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)


def err(fn, *args, **kw) -> RequestError:  # type: ignore[no-untyped-def]
    with pytest.raises(RequestError) as exc:
        fn(*args, **kw)
    return exc.value


def test_users_and_movies() -> None:
    np.testing.assert_array_equal(v.users_to_index(np.array([3, 1]), USERS), [2, 0])
    e = err(v.users_to_index, np.array([1, 9, 8]), USERS)
    assert e.code == ErrorCode.NOT_FOUND and "user_ids[1]" in e.message and "9" in e.message
    e = err(v.movies_to_index, np.array([10, 99]), ITEMS, "exclude_movie_ids")
    assert e.code == ErrorCode.INVALID_ARGUMENT and "exclude_movie_ids[1]" in e.message
    e = err(v.movies_to_index, np.array([10, 20, 10]), ITEMS, "include_movie_ids")
    assert "include_movie_ids[2]: duplicate movie id 10" in e.message
    assert v.movies_to_index(np.array([10, 10]), ITEMS, "x", unique=False).tolist() == [0, 0]


def test_counts_and_k() -> None:
    assert "empty" in err(v.check_count, 0, 5, "user_ids").message
    assert "limit is 5" in err(v.check_count, 6, 5, "user_ids").message
    assert "1 <= k <= 4" in err(v.check_k, 0, 4).message
    assert "1 <= k <= 4" in err(v.check_k, 5, 4).message
    v.check_k(0, 4, allow_zero=True)
    v.check_k(4, 4)


def test_rating_vectors() -> None:
    ids = np.array([10, 30, 20], dtype=np.int64)
    csr = v.rating_vectors(ids, np.array([5, 1, 3], np.float32), np.array([2, 1]), np.array([2, 1]), ITEMS, STARS)
    assert csr.n_rows == 2 and csr.indptr.tolist() == [0, 2, 3]
    assert csr.indices.tolist() == [0, 2, 1] and csr.values.tolist() == [5, 1, 3]
    e = err(v.rating_vectors, ids, np.array([5, 1, 7], np.float32), np.array([2, 1]), np.array([2, 1]), ITEMS, STARS)
    assert "queries[1].ratings.ratings[0]: 7 is not on the model's rating scale 1..5 step 1" in e.message
    e = err(
        v.rating_vectors, ids, np.array([5, np.nan, 3], np.float32), np.array([2, 1]), np.array([2, 1]), ITEMS, STARS
    )
    assert "queries[0].ratings.ratings[1]" in e.message
    e = err(
        v.rating_vectors,
        np.array([10, 20, 20]),
        np.ones(3, np.float32),
        np.array([1, 2]),
        np.array([1, 2]),
        ITEMS,
        STARS,
    )
    assert "queries[1].ratings.movie_ids[1]: duplicate" in e.message
    # the same movie in two different vectors is fine
    v.rating_vectors(np.array([10, 10]), np.ones(2, np.float32), np.array([1, 1]), np.array([1, 1]), ITEMS, STARS)
    e = err(v.rating_vectors, ids, np.ones(3, np.float32), np.array([2, 1]), np.array([1, 2]), ITEMS, STARS)
    assert "same length" in e.message
    t = v.target_lists(np.array([40, 10, 20]), np.array([2, 1]), ITEMS)
    assert t.indices.tolist() == [3, 0, 1]  # request order kept


def test_ratings_are_checked_against_the_model_scale() -> None:
    ids = np.array([10, 20, 30, 40], dtype=np.int64)
    one_row = (np.array([4]), np.array([4]), ITEMS, HALF_STARS)
    csr = v.rating_vectors(ids, np.array([0.5, 1.5, 3.5, 5.0], np.float32), *one_row)
    assert csr.values.tolist() == [0.5, 1.5, 3.5, 5.0]
    for bad, value in ((0.25, "0.25"), (5.5, "5.5"), (3.3, "3.3")):
        e = err(v.rating_vectors, ids, np.array([4, 4, bad, 1], np.float32), *one_row)
        assert e.code == ErrorCode.INVALID_ARGUMENT
        assert e.message.startswith(
            f"queries[0].ratings.ratings[2]: {value} is not on the model's rating scale 0.5..5 step 0.5"
        ), e.message
    e = err(v.rating_vectors, ids[:1], np.array([0.5], np.float32), np.array([1]), np.array([1]), ITEMS, STARS)
    assert "0.5 is not on the model's rating scale 1..5 step 1" in e.message
    continuous = RatingScale(1.0, 5.0, 0.0)
    v.rating_vectors(ids[:1], np.array([3.3], np.float32), np.array([1]), np.array([1]), ITEMS, continuous)
    e = err(v.rating_vectors, ids[:1], np.array([np.inf], np.float32), np.array([1]), np.array([1]), ITEMS, continuous)
    assert "inf is not on the model's rating scale 1..5 (any value)" in e.message


def test_settings_flags_env_defaults() -> None:
    s = ServerSettings.from_sources(
        {"port": None, "max_delay_ms": 3.5}, {"MOVIEREC_PORT": "6000", "MOVIEREC_MAX_DELAY_MS": "9"}
    )
    assert s.port == 6000 and s.max_delay_ms == 3.5 and s.max_batch_size == 256
    assert ServerSettings.from_sources({}, {}).port == 50051
    with pytest.raises(ValueError, match="MOVIEREC_PORT"):
        ServerSettings.from_sources({}, {"MOVIEREC_PORT": "abc"})
    with pytest.raises(ValueError, match="max_batch_size"):
        ServerSettings(max_batch_size=0)
    with pytest.raises(ValueError, match="device"):
        ServerSettings(device="tpu")


# -- cold start: profiles and movies ---------------------------------------------------------------------------


def fields(*profiles: tuple[int, str, str, str] | None) -> v.ProfileFields:
    """ProfileFields of queries given as (age, gender, occupation, zip_code), None = no profile field."""
    rows = [p or (0, "", "", "") for p in profiles]
    return v.ProfileFields(
        has=np.array([p is not None for p in profiles]),
        age=np.array([r[0] for r in rows], dtype=np.int64),
        gender=np.array([r[1] for r in rows], dtype=object),
        occupation=np.array([r[2] for r in rows], dtype=object),
        zip_code=np.array([r[3] for r in rows], dtype=object),
    )


def test_profiles_are_normalized_and_marked_present() -> None:
    p = v.profiles(fields((25, "f", " Student ", "94110"), None, (0, "", "", ""), (120, "M", "astronaut", ""), (1, "", "", "")))
    assert p is not None
    assert p.present.tolist() == [True, False, False, True, True]  # set with nothing given = not present
    assert p.gender.tolist() == ["F", "", "", "M", ""] and p.occupation.tolist() == ["student", "", "", "astronaut", ""]
    assert p.age.tolist() == [25, 0, 0, 120, 1] and p.zip.tolist() == ["94110", "", "", "", ""]
    assert v.profiles(fields(None, None)) is None  # no query has one: nothing to build


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((130, "", "", ""), "queries[2].profile.age: 130 is out of range; allowed 1..120, or 0 for not given"),
        ((-1, "", "", ""), "queries[2].profile.age: -1 is out of range"),
        ((30, "X", "", ""), "queries[2].profile.gender: 'X' is not a gender code; allowed \"F\" or \"M\" (case-insensitive)"),
        ((30, "female", "", ""), "queries[2].profile.gender: 'female' is not a gender code"),
        ((30, "F", "", "1" * 17), "queries[2].profile.zip_code: 17 characters; at most 16"),
        ((30, "F", "x" * 101, ""), "queries[2].profile.occupation: 101 characters; at most 100"),
    ],
)
def test_bad_profiles(bad: tuple[int, str, str, str], message: str) -> None:
    e = err(v.profiles, fields((20, "M", "", ""), None, bad, bad))  # the first offending query is named
    assert e.code == ErrorCode.INVALID_ARGUMENT and e.message.startswith(message), e.message


def test_profile_edge_values_are_accepted() -> None:
    p = v.profiles(fields((1, "m", "", "1" * 16), (120, "F", "someone the model never saw", "")))
    assert p is not None and p.present.all()


def movies(*rows: tuple[int, str, int, list[str]], limit: int = 10) -> MovieTable:
    return v.movie_table(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=object),
        np.array([r[2] for r in rows], dtype=np.int64),
        [r[3] for r in rows],
        limit,
    )


def test_movie_table_cleans_titles_and_genres() -> None:
    t = movies((7, "  Film  ", 0, [" Drama ", "", "Unheard-of genre"]), (3, "Other", 1870, []), (9, "Last", 2100, ["Comedy"]))
    assert t.movie_ids.tolist() == [7, 3, 9] and t.titles == ["Film", "Other", "Last"]
    assert t.years.tolist() == [0, 1870, 2100] and t.genres == [["Drama", "Unheard-of genre"], [], ["Comedy"]]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((), "movies: empty request; give between 1 and 3 entries"),
        (((1, "a", 0, []),) * 4, "movies: 4 entries in one call; the limit is 3"),
        (((1, "a", 0, []), (0, "b", 0, [])), "movies[1].movie_id: 0; a movie id must be > 0"),
        (((-9, "a", 0, []),), "movies[0].movie_id: -9; a movie id must be > 0"),
        (((5, "a", 0, []), (6, "b", 0, []), (5, "c", 0, [])), "movies[2].movie_id: duplicate movie id 5 (also movies[0])"),
        (((5, "a", 0, []), (6, "", 0, [])), "movies[1].title: empty; give the movie's title"),
        (((5, " \t ", 0, []),), "movies[0].title: empty"),
        (((5, "t" * 1001, 0, []),), "movies[0].title: 1001 characters; at most 1000"),
        (((5, "a", 1869, []),), "movies[0].year: 1869 is out of range; allowed 1870..2100, or 0 for unknown"),
        (((5, "a", 2101, []),), "movies[0].year: 2101 is out of range"),
        (((5, "a", -1, []),), "movies[0].year: -1 is out of range"),
        (((5, "a", 0, ["g"] * 33),), "movies[0].genres: 33 genres; at most 32"),
        (((5, "a", 0, ["ok"]), (6, "b", 0, ["ok", "g" * 101])), "movies[1].genres[1]: 101 characters; at most 100"),
    ],
)
def test_bad_movies(rows: tuple[tuple[int, str, int, list[str]], ...], message: str) -> None:
    e = err(movies, *rows, limit=3)
    assert e.code == ErrorCode.INVALID_ARGUMENT and e.message.startswith(message), e.message


def test_upsert_settings_and_where_the_overlay_lives(tmp_path: Path) -> None:
    assert ServerSettings().max_movies_per_upsert == 1000
    assert ServerSettings.from_sources({}, {"MOVIEREC_MAX_MOVIES_PER_UPSERT": "5"}).max_movies_per_upsert == 5
    with pytest.raises(ValueError, match="max_movies_per_upsert"):
        ServerSettings(max_movies_per_upsert=0)
    art = tmp_path / "artifacts" / "ml-100k-u1"
    art.mkdir(parents=True)
    (art / "manifest.json").write_text("{}")
    # one artifact: a sibling file, never inside the artifact directory (retraining replaces it whole)
    assert ServerSettings(artifact=art).overlay_path() == tmp_path / "artifacts" / "ml-100k-u1.added-movies.json"
    versions = tmp_path / "models"
    versions.mkdir()
    assert ServerSettings(artifact=versions).overlay_path() == versions / "added-movies.json"  # beside the versions
    assert ServerSettings(artifact=art, catalog_overlay="/x/y.json").overlay_path() == Path("/x/y.json")
