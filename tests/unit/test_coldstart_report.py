"""Cold-start report: the metric and baseline functions on hand-made data, the splits, and a smoke run of the
orchestration on a tiny synthetic data set (a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from movierec.core.sparse import Csr
from movierec.trainer import coldstart_metrics as cm
from movierec.trainer.coldstart_report import (
    ColdStartData,
    average_seeds,
    check_floors,
    cold_movie_ids,
    cold_user_split,
    release_keys,
    run_cold_start,
    with_train_seed,
)


def dense(m: Csr) -> np.ndarray:
    return m.densify()


# -- reveal order ----------------------------------------------------------------------------------------
def test_history_rank_is_earliest_first_with_ties_in_file_order() -> None:
    users = [1, 1, 2, 1, 2]
    stamps = [5, 3, 3, 3, 1]
    # user 1: rows 1 and 3 tie at t=3 (row 1 first in the file), row 0 is later; user 2: row 4 then row 2
    assert cm.history_rank(users, stamps).tolist() == [2, 0, 1, 1, 0]


def test_reveal_split_three_users_five_movies() -> None:
    # 3 users x 5 movies; each rating's time decides the order, ties in file order
    rows = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2], dtype=np.int64)
    cols = np.array([0, 1, 2, 3, 4, 0, 2, 1, 3, 4, 0, 2], dtype=np.int64)
    vals = np.array([5, 4, 3, 2, 1, 2, 3, 4, 5, 1, 2, 3], dtype=np.float32)
    when = np.array([40, 10, 30, 20, 7, 7, 5, 9, 9, 1, 9, 2], dtype=np.int64)
    rank = cm.history_rank(rows, when)
    assert rank.tolist() == [3, 0, 2, 1, 1, 2, 0, 2, 3, 0, 4, 1]
    inputs, targets = cm.reveal_split(rows, cols, vals, rank, 2, 3, 5)
    # user 0 reveals movies 1 (t10) and 3 (t20); user 1 movies 2 (t5) and 4 (t7, before movie 0 in the file);
    # user 2 movies 4 (t1) and 2 (t2)
    expect_in = np.array([[0, 4, 0, 2, 0], [0, 0, 3, 0, 1], [0, 0, 3, 0, 1]], dtype=np.float32)
    expect_out = np.array([[5, 0, 3, 0, 0], [2, 0, 0, 0, 0], [2, 4, 0, 5, 0]], dtype=np.float32)
    np.testing.assert_array_equal(dense(inputs), expect_in)
    np.testing.assert_array_equal(dense(targets), expect_out)
    none_in, all_out = cm.reveal_split(rows, cols, vals, rank, 0, 3, 5)
    assert none_in.nnz == 0 and all_out.nnz == rows.size
    relevant = cm.relevant_of(targets)
    np.testing.assert_array_equal(dense(relevant), np.where(expect_out >= 4, expect_out, 0))


# -- segments and popularity -----------------------------------------------------------------------------
def test_segment_ids() -> None:
    seg = cm.segment_ids(["F", "M", "", "M", "F"], [20, 60, 30, 0, 17])
    # F=0, M=1; groups <18=0, 18-24=1, ..., 56+=6; 7 groups per gender; unknown = 14
    assert seg.tolist() == [1, 13, cm.N_SEGMENTS, cm.N_SEGMENTS, 0]
    assert cm.segment_label(1) == "F 18-24" and cm.segment_label(13) == "M 56+"


def test_popularity_order_counts_then_mean_then_index() -> None:
    counts = np.array([2, 3, 2, 0, 2], dtype=np.float64)
    means = np.array([4.0, 3.0, 5.0, 3.5, 4.0])
    scores = cm.popularity_scores(counts, means)
    assert np.argsort(-scores, kind="stable").tolist() == [1, 2, 0, 4, 3]


def test_segment_popularity_order() -> None:
    # segment 0 rated movie 2 twice and movie 0 once; segment 1 rated movie 1 once; global: 2, 0, 1, 3
    segs = np.array([0, 0, 0, 1, cm.N_SEGMENTS], dtype=np.int64)
    items = np.array([2, 2, 0, 1, 0], dtype=np.int64)
    global_scores = cm.popularity_scores(np.array([2.0, 1.0, 2.0, 0.0]), np.array([3.0, 4.0, 4.0, 3.0]))
    table = cm.segment_popularity_scores(segs, items, 4, global_scores)
    order = np.argsort(-table, axis=1, kind="stable")
    assert order[0].tolist() == [2, 0, 1, 3]
    assert order[1].tolist() == [1, 2, 0, 3]  # movie 1 first, the rest by global popularity
    assert order[5].tolist() == [2, 0, 1, 3]  # a segment with no ratings: global popularity
    assert order[cm.N_SEGMENTS].tolist() == [2, 0, 1, 3]  # unknown segment: global popularity
    ranked = cm.ranked_from_scores(table[[0, 1]], Csr.from_coo([0], [2], [5.0], 2, 4), k=2)
    assert ranked.tolist() == [[0, 1], [1, 2]]


def test_segment_mean_ratings_shrink_to_the_movie_mean() -> None:
    segs = np.array([0, 0, 1], dtype=np.int64)
    items = np.array([0, 0, 0], dtype=np.int64)
    ratings = np.array([5.0, 5.0, 2.0])
    means = np.array([4.0, 3.5])
    table = cm.segment_mean_ratings(segs, items, ratings, 2, means, shrink=2.0)
    assert table[0, 0] == pytest.approx((10 + 2 * 4.0) / 4)
    assert table[1, 0] == pytest.approx((2 + 2 * 4.0) / 3)
    assert table[2, 0] == pytest.approx(4.0) and table[0, 1] == pytest.approx(3.5)
    assert table[cm.N_SEGMENTS, 0] == pytest.approx(4.0)


# -- genre mean and content model ------------------------------------------------------------------------
def test_genre_mean_predictions() -> None:
    genres, names = cm.genre_matrix([["A"], ["A", "B"], ["B"], ["C"], []])
    assert names == ["A", "B", "C"]
    counts = np.array([2.0, 1.0, 3.0, 0.0, 1.0])
    sums = np.array([8.0, 5.0, 6.0, 0.0, 2.0])
    pred = cm.genre_mean_predictions(genres, counts, sums, np.arange(5), 3.0)
    # A: movies 0, 1 -> 13/3; A|B: 0, 1, 2 -> 19/6; B: 1, 2 -> 11/4; C: only unrated movies -> global; none -> global
    np.testing.assert_allclose(pred, [13 / 3, 19 / 6, 11 / 4, 3.0, 3.0])


def test_content_model_user_offsets_by_hand() -> None:
    genres, _ = cm.genre_matrix([["A"], ["B"], ["A", "B"]])
    model = cm.ContentModel(
        mu=3.0,
        weights=np.zeros(2),
        item_bias=np.zeros(3),
        segment_genre=np.zeros((cm.N_SEGMENTS + 1, 2)),
        content=genres,
        genre_avg=genres / genres.sum(axis=1, keepdims=True),
    )
    segments = np.array([0, 0], dtype=np.int64)
    # row 0 revealed movie 0 (A) = 5 and movie 1 (B) = 3; row 1 revealed nothing
    offsets = model.user_offsets(np.array([0, 0]), np.array([0, 1]), np.array([5.0, 3.0]), segments)
    bias, genre = offsets
    assert bias.tolist() == pytest.approx([2 / 7, 0.0])  # residuals 2, 0 shrunk by 5
    assert genre[0].tolist() == pytest.approx([(2 - 2 / 7) / 6, (0 - 2 / 7) / 6])
    assert genre[1].tolist() == [0.0, 0.0]
    pred = model.predict(np.array([0, 1]), np.array([2, 2]), segments, offsets)
    assert pred.tolist() == pytest.approx([3 + 2 / 7 + 0.5 * (2 / 7 - 1 / 21), 3.0])
    full = model.score_matrix(segments, offsets)
    np.testing.assert_allclose(full[:, 2], pred)


def test_content_model_fit_new_movie_is_its_content() -> None:
    genres, _ = cm.genre_matrix([["A"], ["A"], ["B"], ["A"]])
    content = cm.content_features(genres, [1995, 1995, 1980, 1995])
    assert content.shape == (4, 4)  # 2 genres + 2 decades
    items = np.array([0, 0, 1, 2, 2], dtype=np.int64)
    ratings = np.array([5.0, 4.0, 5.0, 2.0, 1.0])
    segs = np.zeros(5, dtype=np.int64)
    model = cm.ContentModel.fit(content, genres, items, ratings, segs)
    assert model.mu == pytest.approx(3.4)
    assert model.item_bias[3] == 0.0  # movie 3 has no training rating
    # the new movie shares movies 0/1's content: its prediction is above the B movie's
    base = model.base(np.arange(4), np.zeros(4, dtype=np.int64))
    assert base[3] > model.mu > base[2]
    assert model.segment_genre[cm.N_SEGMENTS].tolist() == [0.0, 0.0]


# -- ranking helpers -------------------------------------------------------------------------------------
def test_ranked_from_scores_ties_and_exclusions() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 0.5], [2.0, 2.0, 2.0, 2.0]])
    exclude = Csr.from_coo([0, 1, 1], [1, 0, 3], [1.0, 1.0, 1.0], 2, 4)
    assert cm.ranked_from_scores(scores, exclude).tolist() == [[2, 0, 3, -1], [1, 2, -1, -1]]
    assert cm.ranked_from_scores(scores, None, k=2).tolist() == [[1, 2], [0, 1]]


def test_percentile_ranks() -> None:
    ranked = np.array([[2, 0, 1, -1], [3, 1, 0, 2]], dtype=np.int64)
    pct = cm.percentile_ranks(ranked, np.array([0, 0, 0, 0, 1, 1]), np.array([2, 0, 1, 3, 2, 1]), 4)
    # row 0: 3 candidates (movie 3 excluded): positions 0, 1, 2 over 2 others; row 1: 4 candidates
    np.testing.assert_allclose(pct, [0.0, 0.5, 1.0, np.nan, 1.0, 1 / 3])


# -- splits ----------------------------------------------------------------------------------------------
def _ratings() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame(
        {
            "user": rng.integers(1, 41, n),
            "item": rng.integers(1, 61, n),
            "rating": rng.integers(1, 6, n).astype(np.float32),
            "timestamp": rng.integers(0, 1000, n),
        }
    ).drop_duplicates(["user", "item"], ignore_index=True)
    late = df["user"] > 35  # users 36-40 rate only after everyone else: cold users of the time split
    df.loc[late, "timestamp"] += 1000
    return df


def test_cold_user_splits() -> None:
    df = _ratings()
    train, cold = cold_user_split(df, "random", seed=1)
    assert len(train) + len(cold) == len(df)
    assert not set(train["user"]) & set(cold["user"])
    assert cold["user"].nunique() == round(0.2 * df["user"].nunique())
    again = cold_user_split(df, "random", seed=1)[1]
    pd.testing.assert_frame_equal(cold, again)
    train, cold = cold_user_split(df, "time")
    assert len(cold) <= len(df) - len(train) == int(np.floor(0.2 * len(df) + 0.5))
    assert not set(train["user"]) & set(cold["user"])
    assert cold["timestamp"].min() >= train["timestamp"].max()


def test_cold_movie_splits_latest_by_release_then_id() -> None:
    df = pd.DataFrame({"user": np.arange(20) % 3, "item": np.arange(1, 21), "rating": 3.0, "timestamp": 0})
    release = pd.Series([0.0] * 17 + [5.0, 9.0, 9.0], index=np.arange(1, 21))
    assert cold_movie_ids(df, release, "latest").tolist() == [19, 20]  # 10% of 20 movies
    release[20] = 1.0
    assert cold_movie_ids(df, release, "latest").tolist() == [18, 19]
    ids = cold_movie_ids(df, release, "random", seed=4)
    assert ids.size == 2 and np.all(np.isin(ids, df["item"]))


def test_release_keys_prefer_u_item_dates(tmp_path: Path) -> None:
    catalog = pd.DataFrame({"item": [1, 2, 3], "title": ["a", "b", "c"], "year": pd.array([1995, 1997, None], "Int64"),
                            "genres": ["", "", ""]})  # fmt: skip
    uitem = tmp_path / "u.item"
    uitem.write_text("1|a|01-Jan-1995|||0\n2|b|14-Mar-1997|||0\n3|c||||0\n", encoding="latin-1")
    keys = release_keys(catalog, uitem)
    assert keys[2] > release_keys(catalog)[2]  # 14 March vs 1 January 1997
    assert keys[3] < keys[1] < keys[2]  # no date at all: earliest


# -- floors and orchestration ----------------------------------------------------------------------------
def test_check_floors_pass_and_fail() -> None:
    users = [
        {"split": "s", "model": m, "n": n, "ndcg@10": v, "rmse": r}
        for m, n, v, r in [
            ("hybrid", 0, 0.30, 1.0), ("segment-popularity", 0, 0.25, 1.0), ("hybrid", 1, 0.31, 0.98),
            ("hybrid-profile-only", 1, 0.30, 0.99), ("hybrid", 3, 0.29, 0.97), ("hybrid-profile-only", 3, 0.30, 0.99),
        ]
    ]  # fmt: skip
    movies = [{"split": "m", "model": "hybrid", "rmse": 1.0}, {"split": "m", "model": "genre-mean", "rmse": 1.1}]
    floors = check_floors(users, movies)
    def passed(start: str, split: str) -> bool:
        (hit,) = [f for f in floors if f["floor"].startswith(start) and f["split"] == split]
        return bool(hit["pass"])

    assert passed("profile only beats popularity by segment", "users: s") is True
    assert passed("every revealed rating helps: NDCG@10", "users: s") is False  # NDCG@10 fell at n=3
    assert passed("every revealed rating helps: RMSE", "users: s") is True  # RMSE fell at n=1 and 3
    assert passed("cold movies beat the genre-mean", "movies: m") is True
    assert len(floors) == 4


def test_average_seeds_means_spreads_and_per_seed_values() -> None:
    rows = [
        {"split": "s", "model": "hybrid", "n": 1, "ndcg@10": 0.30, "rmse": 1.0, "ratings": 50, "seed": 1},
        {"split": "s", "model": "hybrid", "n": 1, "ndcg@10": 0.20, "rmse": 1.2, "ratings": 50, "seed": 0},
        {"split": "s", "model": "hybrid", "n": 3, "ndcg@10": 0.40, "rmse": 0.9, "ratings": 40, "seed": 0},
    ]  # fmt: skip
    one, three = average_seeds(rows, ("split", "model", "n"))
    assert (one["n"], one["seeds"], one["ratings"]) == (1, 2, 50) and "seed" not in one
    assert one["ndcg@10"] == pytest.approx(0.25) and one["rmse"] == pytest.approx(1.1)
    assert one["ndcg@10_sd"] == pytest.approx(np.std([0.2, 0.3], ddof=1))
    assert one["ndcg@10_seeds"] == pytest.approx([0.20, 0.30])  # in seed order, not row order
    assert (three["seeds"], three["ndcg@10"], three["ndcg@10_sd"]) == (1, 0.40, 0.0)


def test_check_floors_reads_the_mean_over_seeds_and_lists_each_seed() -> None:
    per_seed = [
        {"split": "s", "model": m, "n": n, "ndcg@10": v, "rmse": 1.0, "seed": seed}
        for seed, gain in ((0, -0.01), (1, 0.03))
        for m, n, v in (("hybrid", 0, 0.3), ("segment-popularity", 0, 0.2), ("hybrid", 1, 0.3 + gain),
                        ("hybrid-profile-only", 1, 0.3))
    ]  # fmt: skip
    floors = check_floors(average_seeds(per_seed, ("split", "model", "n")), [])
    (helps,) = [f for f in floors if f["floor"].startswith("every revealed rating helps: NDCG@10")]
    assert helps["pass"] is True  # mean gain +0.01 although seed 0 lost
    assert "n=1 +0.0100" in helps["value"] and "each seed: n=1 -0.0100 / +0.0300" in helps["value"]
    (prof,) = [f for f in floors if f["floor"].startswith("profile only beats")]
    assert "over 2 seeds" in prof["value"]


def test_with_train_seed_moves_every_models_seed(tiny_cold_preset: Any) -> None:
    preset = tiny_cold_preset(main_epochs=3, side_epochs=5)
    assert with_train_seed(preset, 0) is preset
    moved = with_train_seed(preset, 2)
    assert moved.train.seed == preset.train.seed + 2
    assert [t.seed for _, _, t in moved.side_models] == [t.seed + 2 for _, _, t in preset.side_models]
    assert moved.side_models[0][1] == preset.side_models[0][1] and moved.model == preset.model


@pytest.fixture(scope="module")
def tiny_report(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_ratings: tuple[pd.DataFrame, ...],
    tiny_profiles: pd.DataFrame,
    tiny_cold_preset: Any,
) -> tuple[dict, Path]:
    """The whole report on tiny_ratings (users 101-120 rate only late, so the time split has cold users)."""
    train, test, catalog = tiny_ratings
    df = pd.concat([train, test], ignore_index=True)
    df.loc[df["user"] > 100, "timestamp"] += 30_000_000
    preset = tiny_cold_preset(main_epochs=3, side_epochs=5)
    out = tmp_path_factory.mktemp("coldstart")
    data = ColdStartData(df, catalog, tiny_profiles, release_keys(catalog))
    result = run_cold_start(data, out / "reports", doc=out / "docs" / "cold-start.md", preset=preset,
                            dataset="tiny synthetic", log=lambda _: None)  # fmt: skip
    return result, out


def test_orchestration_smoke(tiny_report: tuple[dict, Path]) -> None:
    result, out = tiny_report
    for name in ("reports/cold-start.json", "reports/cold-start.png", "docs/cold-start.md"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "reports" / "cold-start.json").read_text())
    assert saved["floors"] == result["floors"]
    for split in ("random", "time"):
        rows = [r for r in result["users"] if r["split"] == split]
        assert {r["n"] for r in rows} == {0, 1, 3, 5, 10}
        assert {r["model"] for r in rows} == {
            "hybrid", "hybrid-profile-only", "hybrid-fixed", "warm", "popularity", "segment-popularity", "content"
        }  # fmt: skip
        info = result["info"]["users"][split]
        assert info["users"] > 0
        # the same users at every n, and targets shrink by exactly the revealed ratings
        hyb = {r["n"]: r for r in rows if r["model"] == "hybrid"}
        assert all(hyb[n]["ratings"] == info["ratings"] - n * info["users"] for n in hyb)
        # n = 0: the profile-only line is the hybrid itself; warm = popularity (the scorer's popularity path)
        same = [r for r in rows if r["n"] == 0 and r["model"] in ("hybrid", "hybrid-profile-only")]
        assert same[0]["ndcg@10"] == same[1]["ndcg@10"] and same[0]["rmse"] == same[1]["rmse"]
        pop = {r["model"]: r for r in rows if r["n"] == 0 and r["model"] in ("warm", "popularity")}
        assert pop["warm"]["ndcg@10"] == pytest.approx(pop["popularity"]["ndcg@10"])
        assert pop["warm"]["rmse"] == pytest.approx(pop["popularity"]["rmse"], abs=1e-5)
    for split in ("random", "latest"):
        by_model = {r["model"]: r for r in result["movies"] if r["split"] == split}
        assert set(by_model) == {"hybrid", "content", "genre-mean", "global-mean", "random"}
        assert 0.0 <= by_model["hybrid"]["percentile_rated"] <= 1.0
        assert np.isfinite(by_model["hybrid"]["rmse"]) and np.isfinite(by_model["genre-mean"]["rmse"])
        assert result["info"]["movies"][split]["cold_movies_added"] == 8  # 10% of 80, all added by upsert
    doc = (out / "docs" / "cold-start.md").read_text()
    assert "# Cold start on tiny synthetic" in doc and "../reports/cold-start.png" in doc
    assert doc.count("| PASS |") + doc.count("| FAIL |") == len(result["floors"])


def test_two_training_seeds_average_two_trainings(
    tmp_path: Path, tiny_ratings: tuple[pd.DataFrame, ...], tiny_profiles: pd.DataFrame, tiny_cold_preset: Any
) -> None:
    train, test, catalog = tiny_ratings
    df = pd.concat([train, test], ignore_index=True)
    data = ColdStartData(df, catalog, tiny_profiles, release_keys(catalog))
    result = run_cold_start(data, tmp_path, preset=tiny_cold_preset(main_epochs=2, side_epochs=3), user_splits=("random",),
                            movie_splits=("random",), train_seeds=2, dataset="tiny", log=lambda _: None)  # fmt: skip
    assert result["meta"]["train_seeds"] == 2
    assert {r["seed"] for r in result["per_seed"]["users"]} == {0, 1}
    for row in result["users"] + result["movies"]:
        assert row["seeds"] == 2
        per = row["rmse_seeds"]
        assert len(per) == 2 and row["rmse"] == pytest.approx(np.mean(per), nan_ok=True)
    hyb = [r for r in result["per_seed"]["users"] if r["model"] == "hybrid" and r["n"] == 3]
    assert hyb[0]["rmse"] != hyb[1]["rmse"]  # the seeds trained different networks
    assert "mean over 2 training seeds" in (tmp_path / "cold-start.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cold-start", "--all-folds"], "runs its own splits"),
        (["--cold-start", "--train-seeds", "0"], "--train-seeds must be at least 1"),
        (["--train-seeds", "2"], "--train-seeds goes with --cold-start"),
        (["--cold-start", "--presets", "classic"], "trains no cold-start models"),
        (["--cold-start", "--presets", "best", "ease"], "one preset"),
        (["--doc", "x.md"], "--doc goes with --cold-start"),
    ],
)
def test_cli_refuses_bad_combinations(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from movierec.cli import main

    assert main(["report", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_rerender_from_saved_json(tiny_report: tuple[dict, Path], tmp_path: Path) -> None:
    from movierec.trainer.coldstart_report import write_outputs

    result, out = tiny_report
    saved = json.loads((out / "reports" / "cold-start.json").read_text())
    write_outputs(saved, tmp_path / "r.json", tmp_path / "r.png", out / "docs" / "again.md")
    assert (out / "docs" / "again.md").read_text() == (out / "docs" / "cold-start.md").read_text()
