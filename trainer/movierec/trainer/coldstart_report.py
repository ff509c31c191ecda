"""`movierec report --cold-start`: how the served models answer users and movies they were never trained on.

Protocol (written out in docs/cold-start.md). Every model is trained by `run_training` with the default
preset exactly as `movierec train` does (every choice on validation splits carved from the training data);
the held-out part only reports. Everything is scored through the serving path, `Scorer`:

- Cold users, held out of training entirely: (a) a random 20% of the users (seeded); (b) the time split
  (the first 80% of the ratings by timestamp train, the rest is test; the test users who never appear in
  training). Only cold users with more than 10 ratings of trained movies are kept, so every point has the
  same users. Each is scored from their profile plus their first n in {0, 1, 3, 5, 10} ratings (earliest
  first; ties in file order); RMSE on the rest of their ratings, NDCG@10 / Recall@10 with relevant = rating
  >= 4 and candidates = every trained movie not revealed. Because the targets shift with n, the same hybrid
  with the profile alone is scored on each n's targets too (the gain of n ratings is the difference), and
  the hybrid is also scored on one fixed set of targets (each user's ratings after the 10th) for every n.
- Cold movies, held out of training entirely (all their ratings removed): (a) a random 10% of the movies;
  (b) the 10% most recently released (latest release date, ties by the higher id). Added through the upsert
  path (`Scorer.with_catalog`, metadata only: title, year, genres); RMSE of their ratings by known users
  (inputs: the user's training history; profiles: the stored ones), and their rank among every movie the
  user did not rate in training (percentile rank of each held-out movie, HR@10 over users, relevant = rated
  >= 4): cold movies compete with every warm candidate.
- Baselines by the same code in the same run (`movierec.trainer.coldstart_metrics`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierec.core.features import MovieTable, Profiles
from movierec.core.scoring import Scorer
from movierec.core.sparse import Csr
from movierec.trainer import coldstart_metrics as cm
from movierec.trainer.config import Preset, get_preset
from movierec.trainer.data import (
    dataset_split_files,
    dataset_users_file,
    fetch_dataset,
    load_catalog,
    load_ratings,
    load_users,
    time_split,
)
from movierec.trainer.metrics import ranking_metrics, rmse
from movierec.trainer.pipeline import run_training

REVEALS: tuple[int, ...] = (0, 1, 3, 5, 10)
K = 10
USER_FRACTION = 0.2
TIME_FRACTION = 0.2
MOVIE_FRACTION = 0.1
SEED = 0
USER_SPLITS: tuple[str, ...] = ("random", "time")
MOVIE_SPLITS: tuple[str, ...] = ("random", "latest")
# Training seeds the report averages over (every split is trained once per seed; the splits stay fixed). The
# cold validation users that pick each model's epoch and prior weight are few (about 75), so one training
# seed moves the time split's profile-only NDCG@10 by about +-0.007, more than the effects the floors read.
TRAIN_SEEDS = 3
SPLIT_TITLES = {
    ("users", "random"): "random 20% of users",
    ("users", "time"): "time split (users first seen in the latest 20% of ratings)",
    ("movies", "random"): "random 10% of movies",
    ("movies", "latest"): "latest-released 10% of movies",
}
USER_MODELS: dict[str, str] = {
    "hybrid": "hybrid (profile + n ratings)",
    "hybrid-profile-only": "hybrid, profile only, same targets",
    "hybrid-fixed": "hybrid (profile + n ratings), fixed targets (ratings after the 10th)",
    "warm": "warm model folding in the n ratings (no profile; n = 0: popularity)",
    "popularity": "popularity (ratings: the movie's mean)",
    "segment-popularity": "popularity by segment, gender x age (ratings: segment mean, shrunk)",
    "content": "content: genres + decade, segment x genre, the user's offsets (shrunk)",
}
MOVIE_MODELS: dict[str, str] = {
    "hybrid": "hybrid via upsert (metadata only)",
    "content": "content: genres + decade, segment x genre, the user's offsets (shrunk)",
    "genre-mean": "genre mean (mean training rating of the movies sharing a genre)",
    "global-mean": "global mean (what a model without metadata answers)",
    "random": "random placement (ranking only)",
}
Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColdStartData:
    """What the report needs: ratings with timestamps (file order), the catalog, user profiles and a
    release key per movie (sortable, later = more recent)."""

    ratings: pd.DataFrame  # user, item, rating, timestamp
    catalog: pd.DataFrame  # item, title, year, genres
    profiles: pd.DataFrame  # user, age, gender, occupation, zip
    release: pd.Series  # indexed by item


def release_keys(catalog: pd.DataFrame, uitem: Path | None = None) -> pd.Series:
    """Each movie's release date as days since 1970 (u.item's release-date column when given), else its
    year (as 1 January of it); movies with neither get the earliest key."""
    year = pd.to_numeric(catalog["year"], errors="coerce")
    days = pd.to_datetime(year.astype("Int64").astype(str) + "-01-01", errors="coerce", format="%Y-%m-%d")
    key = pd.Series(days.to_numpy(), index=catalog["item"].to_numpy())
    if uitem is not None and uitem.exists():
        raw = pd.read_csv(uitem, sep="|", header=None, encoding="latin-1", usecols=[0, 2], names=["item", "date"])
        dates = pd.to_datetime(raw["date"], format="%d-%b-%Y", errors="coerce")
        exact = pd.Series(dates.to_numpy(), index=raw["item"].to_numpy()).reindex(key.index)
        key = exact.fillna(key)
    as_days = (key - pd.Timestamp("1970-01-01")).dt.days.astype("float64")
    return as_days.fillna(as_days.min() - 1 if as_days.notna().any() else 0.0)


def load_ml100k(data_dir: str | Path) -> ColdStartData:
    """ml-100k (fetched if needed): u.data, u.item (with release dates), u.user."""
    data_dir = Path(data_dir)
    fetch_dataset("ml-100k", data_dir)
    files = dataset_split_files("ml-100k", data_dir, "u1")
    assert files.catalog is not None
    users_file = dataset_users_file("ml-100k", data_dir)
    assert users_file is not None
    catalog = load_catalog(files.catalog)
    return ColdStartData(
        ratings=load_ratings(data_dir / "ml-100k" / "u.data"),
        catalog=catalog,
        profiles=load_users(users_file),
        release=release_keys(catalog, files.catalog),
    )


def cold_user_split(ratings: pd.DataFrame, split: str, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, the cold users' ratings), both in file order. "random": a seeded 20% of the users;
    "time": the first 80% of the ratings by timestamp train, cold = test users absent from training."""
    if split == "random":
        users = np.unique(ratings["user"].to_numpy(np.int64))
        rng = np.random.default_rng(seed)
        cold = rng.choice(users, size=int(round(USER_FRACTION * users.size)), replace=False)
        is_cold = ratings["user"].isin(cold).to_numpy()
        return ratings[~is_cold].reset_index(drop=True), ratings[is_cold].reset_index(drop=True)
    if split == "time":
        train, test = time_split(ratings, TIME_FRACTION)
        return train, test[~test["user"].isin(train["user"])].reset_index(drop=True)
    raise ValueError(f"unknown cold-user split {split!r}; choose from: {', '.join(USER_SPLITS)}")


def cold_movie_ids(ratings: pd.DataFrame, release: pd.Series, split: str, seed: int = SEED) -> np.ndarray:
    """The held-out movies among the rated ones: "random" (a seeded 10%) or "latest" (the 10% latest
    release keys, ties by the higher id)."""
    movies = np.unique(ratings["item"].to_numpy(np.int64))
    n = int(round(MOVIE_FRACTION * movies.size))
    if split == "random":
        return np.sort(np.random.default_rng(seed).choice(movies, size=n, replace=False))
    if split == "latest":
        key = release.reindex(movies).fillna(-np.inf).to_numpy(np.float64)
        order = np.lexsort((-movies, -key))  # latest first, then higher ids
        return np.sort(movies[order[:n]])
    raise ValueError(f"unknown cold-movie split {split!r}; choose from: {', '.join(MOVIE_SPLITS)}")


# -- shared helpers --------------------------------------------------------------------------------------
def _segments_of(profiles: pd.DataFrame, users: np.ndarray) -> np.ndarray:
    frame = profiles.drop_duplicates("user").set_index("user").reindex(users)
    gender = frame["gender"].fillna("").astype(str).str.upper().to_numpy(dtype=object)
    age = pd.to_numeric(frame["age"], errors="coerce").fillna(0).to_numpy(np.int64)
    return cm.segment_ids(gender, age)


@dataclass(frozen=True)
class Baselines:
    """Everything the baselines learn from the training ratings, over the scorer's columns."""

    counts: np.ndarray
    means: np.ndarray
    global_mean: float
    popularity: np.ndarray  # (n_items,)
    segment_popularity: np.ndarray  # (N_SEGMENTS + 1, n_items)
    segment_means: np.ndarray  # (N_SEGMENTS + 1, n_items)
    genres: np.ndarray  # (n_items, n_genres)
    content: cm.ContentModel
    train_segments: np.ndarray  # per training rating
    train_items: np.ndarray
    train_ratings: np.ndarray


def fit_baselines(scorer: Scorer, train: pd.DataFrame, profiles: pd.DataFrame) -> Baselines:
    """Fit every baseline on `train` over `scorer`'s columns (trained movies, then any added ones)."""
    items = scorer.items.to_index(train["item"].to_numpy(np.int64))
    keep = items >= 0
    items = items[keep]
    ratings = train["rating"].to_numpy(np.float64)[keep]
    users = train["user"].to_numpy(np.int64)[keep]
    uniq, inverse = np.unique(users, return_inverse=True)
    segments = _segments_of(profiles, uniq)[inverse]
    n = scorer.n_items
    counts, sums = cm.item_stats(items, ratings, n)
    mu = float(ratings.mean())
    means = cm.item_means(counts, sums, mu)
    popularity = cm.popularity_scores(counts, means)
    genres, _ = cm.genre_matrix(scorer.catalog.genres)
    content = cm.content_features(genres, scorer.catalog.years)
    return Baselines(
        counts=counts,
        means=means,
        global_mean=mu,
        popularity=popularity,
        segment_popularity=cm.segment_popularity_scores(segments, items, n, popularity),
        segment_means=cm.segment_mean_ratings(segments, items, ratings, n, means),
        genres=genres,
        content=cm.ContentModel.fit(content, genres, items, ratings, segments),
        train_segments=segments,
        train_items=items,
        train_ratings=ratings,
    )


def _row(split: str, model: str, **values: Any) -> dict[str, Any]:
    return {"split": split, "model": model, **values}


def _ranking(ranked: np.ndarray, relevant: Csr) -> dict[str, float]:
    m = ranking_metrics(ranked, relevant, K)
    return {"ndcg@10": m[f"ndcg@{K}"], "recall@10": m[f"recall@{K}"], "hit@10": m[f"hit@{K}"], "users": m["users"]}


# -- cold users ------------------------------------------------------------------------------------------
def evaluate_cold_users(
    scorer: Scorer,
    train: pd.DataFrame,
    cold: pd.DataFrame,
    profiles: pd.DataFrame,
    *,
    split: str,
    reveals: Sequence[int] = REVEALS,
    log: Log = _stderr,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per (n revealed, model) for the cold users' ratings `cold` (file order), and counts."""
    reveals = tuple(sorted(reveals))
    top = reveals[-1]
    items = scorer.items.to_index(cold["item"].to_numpy(np.int64))
    known = items >= 0
    c = cold[known]
    per_user = c.groupby("user")["item"].transform("size").to_numpy()
    eligible = per_user > top
    c, items = c[eligible], items[known][eligible]
    users, rows = np.unique(c["user"].to_numpy(np.int64), return_inverse=True)
    rows = rows.astype(np.int64)
    ratings = c["rating"].to_numpy(np.float32)
    rank = cm.history_rank(rows, c["timestamp"].to_numpy(np.int64))
    info = {
        "cold_users": int(cold["user"].nunique()),
        "cold_ratings": int(len(cold)),
        "ratings_of_untrained_movies": int((~known).sum()),
        "users": int(users.size),
        "ratings": int(len(c)),
        "users_with_profile": 0,
        "train_ratings": int(len(train)),
        "train_users": int(train["user"].nunique()),
    }
    rows_out: list[dict[str, Any]] = []
    if users.size == 0:
        log(f"cold users {split}: no cold user has more than {top} ratings; skipped")
        return rows_out, info
    prof_frame = profiles.drop_duplicates("user").set_index("user").reindex(users).reset_index(drop=True)
    prof = Profiles.from_frame(prof_frame)
    info["users_with_profile"] = int(prof.present.sum())
    segments = _segments_of(profiles, users)
    base = fit_baselines(scorer, train, profiles)
    n_users, n_items = users.size, scorer.n_items
    fixed_exclude, fixed_targets = cm.reveal_split(rows, items, ratings, rank, top, n_users, n_items)
    empty = Csr.empty(n_users, n_items)
    scale = scorer.rating_scale
    for n in reveals:
        t0 = time.perf_counter()
        inputs, targets = cm.reveal_split(rows, items, ratings, rank, n, n_users, n_items)
        t_rows, t_cols, _ = targets.to_coo()

        def add(model: str, ranked: np.ndarray, pred: np.ndarray, target: Csr = targets, n: int = n) -> None:
            metrics = {"rmse": rmse(pred, target.values), **_ranking(ranked, cm.relevant_of(target))}
            rows_out.append(_row(split, model, n=n, ratings=target.nnz, **metrics))

        add("hybrid", scorer.topk(inputs, K, profiles=prof)[0], scorer.predict(inputs, targets, profiles=prof))
        add(
            "hybrid-profile-only",
            scorer.topk(empty, K, exclude=inputs, profiles=prof)[0],
            scorer.predict(empty, targets, profiles=prof),
        )
        add(
            "hybrid-fixed",
            scorer.topk(inputs, K, exclude=fixed_exclude, profiles=prof)[0],
            scorer.predict(inputs, fixed_targets, profiles=prof),
            fixed_targets,
        )
        add("warm", scorer.topk(inputs, K)[0], scorer.predict(inputs, targets))
        pop = np.broadcast_to(base.popularity, (n_users, n_items))
        add("popularity", cm.ranked_from_scores(pop, inputs, K), scale.clip(base.means[t_cols]))
        add(
            "segment-popularity",
            cm.ranked_from_scores(base.segment_popularity[segments], inputs, K),
            scale.clip(base.segment_means[segments[t_rows], t_cols]),
        )
        i_rows, i_cols, i_vals = inputs.to_coo()
        offsets = base.content.user_offsets(i_rows, i_cols, i_vals, segments)
        add(
            "content",
            cm.ranked_from_scores(base.content.score_matrix(segments, offsets), inputs, K),
            scale.clip(base.content.predict(t_rows, t_cols, segments, offsets)),
        )
        got = {r["model"]: r for r in rows_out if r["n"] == n}
        log(
            f"cold users {split:6s} n={n:2d}: NDCG@10 hybrid {got['hybrid']['ndcg@10']:.4f} "
            f"(profile only {got['hybrid-profile-only']['ndcg@10']:.4f}), segment pop "
            f"{got['segment-popularity']['ndcg@10']:.4f}; RMSE hybrid {got['hybrid']['rmse']:.4f} "
            f"({time.perf_counter() - t0:.1f}s)"
        )
    return rows_out, info


# -- cold movies -----------------------------------------------------------------------------------------
def evaluate_cold_movies(
    scorer: Scorer,
    train: pd.DataFrame,
    cold: pd.DataFrame,
    catalog: pd.DataFrame,
    profiles: pd.DataFrame,
    *,
    split: str,
    seed: int = SEED,
    log: Log = _stderr,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per model for the held-out movies' ratings `cold`, the movies added through `with_catalog`."""
    ids = np.unique(cold["item"].to_numpy(np.int64))
    movies = MovieTable.from_frame(catalog[catalog["item"].isin(ids)][["item", "title", "year", "genres"]])
    view = scorer.with_catalog(movies)
    u = view.users.to_index(cold["user"].to_numpy(np.int64))
    i = view.items.to_index(cold["item"].to_numpy(np.int64))
    keep = (u >= 0) & (i >= 0)
    users, rows = np.unique(u[keep], return_inverse=True)
    cols = i[keep]
    ratings = cold["rating"].to_numpy(np.float32)[keep]
    info = {
        "cold_movies": int(ids.size),
        "cold_movies_added": len(view.added),
        "ratings": int(keep.sum()),
        "ratings_of_unknown_users": int((u < 0).sum()),
        "users": int(users.size),
        "train_ratings": int(len(train)),
        "train_movies": int(view.n_trained),
    }
    out: list[dict[str, Any]] = []
    if users.size == 0:
        log(f"cold movies {split}: no rating of a held-out movie by a known user; skipped")
        return out, info
    n_users, n_items = users.size, view.n_items
    targets = Csr.from_coo(rows, cols, ratings, n_users, n_items)
    t_rows, t_cols, truth = targets.to_coo()
    relevant = cm.relevant_of(targets)
    liked = truth >= cm.RELEVANT_MIN_RATING
    inputs = view.history.rows(users)
    prof = view.known_profiles.take(users)
    segments = _segments_of(profiles, view.users.raw[users])
    base = fit_baselines(view, train, profiles)
    scale = view.rating_scale
    info["liked_ratings"] = int(liked.sum())

    def add(model: str, pred: np.ndarray | None, full_order: np.ndarray | None) -> None:
        values: dict[str, Any] = {"rmse": rmse(pred, truth) if pred is not None else math.nan}
        if full_order is not None:
            pct = cm.percentile_ranks(full_order, t_rows, t_cols, n_items)
            values.update(
                {"percentile_liked": float(np.nanmean(pct[liked])) if liked.any() else math.nan,
                 "percentile_rated": float(np.nanmean(pct)), **_ranking(full_order[:, :K], relevant)}
            )  # fmt: skip
        else:
            values.update({"percentile_liked": math.nan, "percentile_rated": math.nan, "ndcg@10": math.nan,
                           "recall@10": math.nan, "hit@10": math.nan, "users": 0})  # fmt: skip
        out.append(_row(split, model, ratings=int(truth.size), **values))

    t0 = time.perf_counter()
    add("hybrid", view.predict(inputs, targets, profiles=prof), view.topk(inputs, n_items, profiles=prof)[0])
    i_rows, i_cols, i_vals = inputs.to_coo()
    offsets = base.content.user_offsets(i_rows, i_cols, i_vals, segments)
    add(
        "content",
        scale.clip(base.content.predict(t_rows, t_cols, segments, offsets)),
        cm.ranked_from_scores(base.content.score_matrix(segments, offsets), inputs),
    )
    all_items = np.arange(n_items)
    genre_mean = cm.genre_mean_predictions(base.genres, base.counts, base.counts * base.means, all_items, base.global_mean)
    add(
        "genre-mean",
        scale.clip(genre_mean[t_cols]),
        cm.ranked_from_scores(np.broadcast_to(genre_mean, (n_users, n_items)), inputs),
    )
    add("global-mean", scale.clip(np.full(truth.size, base.global_mean)), None)
    rng = np.random.default_rng(seed)
    add("random", None, cm.ranked_from_scores(rng.random((n_users, n_items)), inputs))
    got = {r["model"]: r for r in out}
    log(
        f"cold movies {split:6s}: RMSE hybrid {got['hybrid']['rmse']:.4f} genre mean {got['genre-mean']['rmse']:.4f}; "
        f"percentile (liked) hybrid {got['hybrid']['percentile_liked']:.3f}; HR@10 hybrid {got['hybrid']['hit@10']:.4f} "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    return out, info


# -- floors ----------------------------------------------------------------------------------------------
def _pick(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _spread(a: dict[str, Any], b: dict[str, Any], metric: str) -> str:
    """The spread over training seeds, as " (sd x / y over k seeds)", when the rows average several."""
    if a.get("seeds", 1) < 2:
        return ""
    return f" (sd {a.get(metric + '_sd', 0.0):.4f} / {b.get(metric + '_sd', 0.0):.4f} over {a['seeds']} seeds)"


def check_floors(user_rows: Sequence[dict[str, Any]], movie_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's floors (and one extra check, marked), each with its numbers and pass/fail."""
    floors: list[dict[str, Any]] = []
    for split in dict.fromkeys(r["split"] for r in user_rows):
        rows = [r for r in user_rows if r["split"] == split]
        hyb, seg = _pick(rows, model="hybrid", n=0), _pick(rows, model="segment-popularity", n=0)
        if hyb and seg:
            floors.append({
                "floor": "profile only beats popularity by segment on NDCG@10", "split": f"users: {split}",
                "value": f"{hyb['ndcg@10']:.4f} vs {seg['ndcg@10']:.4f}" + _spread(hyb, seg, "ndcg@10"),
                "pass": bool(hyb["ndcg@10"] > seg["ndcg@10"]), "extra": False,
            })  # fmt: skip
        ns = sorted({r["n"] for r in rows if r["n"] > 0})
        for metric, better in (("ndcg@10", 1.0), ("rmse", -1.0)):
            gains, per_seed = [], []
            for n in ns:
                a, b = _pick(rows, model="hybrid", n=n), _pick(rows, model="hybrid-profile-only", n=n)
                if a and b:
                    gains.append((n, a[metric] - b[metric]))
                    seeds_a, seeds_b = a.get(f"{metric}_seeds", []), b.get(f"{metric}_seeds", [])
                    if len(seeds_a) > 1 and len(seeds_a) == len(seeds_b):
                        per_seed.append(f"n={n} " + " / ".join(f"{x - y:+.4f}" for x, y in zip(seeds_a, seeds_b, strict=True)))
            if gains:
                value = ", ".join(f"n={n} {g:+.4f}" for n, g in gains)
                if per_seed:
                    value += " (mean over seeds; each seed: " + ", ".join(per_seed) + ")"
                floors.append({
                    "floor": f"every revealed rating helps: {metric.upper() if metric == 'rmse' else 'NDCG@10'} with n "
                             "ratings minus profile only, same targets",
                    "split": f"users: {split}",
                    "value": value,
                    "pass": all(better * g > 0 for _, g in gains), "extra": False,
                })  # fmt: skip
        fixed = sorted((r for r in rows if r["model"] == "hybrid-fixed"), key=lambda r: r["n"])
        if len(fixed) > 1:
            nd = [r["ndcg@10"] for r in fixed]
            er = [r["rmse"] for r in fixed]
            ok = all(b > a for a, b in zip(nd, nd[1:], strict=False)) and all(b < a for a, b in zip(er, er[1:], strict=False))
            floors.append({
                "floor": "(extra) fixed targets: NDCG@10 rises and RMSE falls with every step of n",
                "split": f"users: {split}",
                "value": "NDCG@10 " + " / ".join(f"{v:.4f}" for v in nd) + "; RMSE " + " / ".join(f"{v:.4f}" for v in er),
                "pass": ok, "extra": True,
            })  # fmt: skip
    for split in dict.fromkeys(r["split"] for r in movie_rows):
        rows = [r for r in movie_rows if r["split"] == split]
        hyb, gm = _pick(rows, model="hybrid"), _pick(rows, model="genre-mean")
        if hyb and gm:
            floors.append({
                "floor": "cold movies beat the genre-mean baseline on RMSE", "split": f"movies: {split}",
                "value": f"{hyb['rmse']:.4f} vs {gm['rmse']:.4f}" + _spread(hyb, gm, "rmse"),
                "pass": bool(hyb["rmse"] < gm["rmse"]),
                "extra": False,
            })  # fmt: skip
    return floors


# -- outputs ---------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _seeds_text(meta: dict[str, Any]) -> str:
    k = int(meta.get("train_seeds", 1))
    if k < 2:
        return "one training seed"
    return (f"every number the mean over {k} training seeds (each split trained {k} times, the splits fixed; "
            "the spread over seeds is given where it decides a floor)")  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    png = meta["png"]
    users, movies, info = result["users"], result["movies"], result["info"]
    out = [
        f"# Cold start on {meta['dataset']}",
        "",
        f"Generated by `{meta['command']}` (`movierec.trainer.coldstart_report`) in {meta['seconds']:.0f} s "
        f"(preset `{meta['preset']}`, split seed {meta['seed']}, {_seeds_text(meta)}, torch threads "
        f"{meta['threads']}, device {meta['device']}); raw rows in `{meta['json']}`, plot `{png}`. Every model was trained by "
        "`run_training` as `movierec train` does (every choice on validation splits carved from the training "
        "data) and scored through the serving path (`Scorer`); the held-out users and movies only report. "
        "The baselines are computed by the same code in the same run.",
        "",
        f"![cold start]({png})",
        "",
        "## Floors",
        "",
        "| check | split | numbers | result |",
        "|---|---|---|---|",
    ]
    for f in result["floors"]:
        out.append(f"| {f['floor']} | {f['split']} | {f['value']} | {'PASS' if f['pass'] else 'FAIL'} |")
    out += [
        "",
        "Rows marked (extra) are not floors of the issue: they read the fixed-targets line below.",
        "",
        "## Protocol",
        "",
        f"* **Cold users** are held out of training entirely: (a) a random {USER_FRACTION:.0%} of the users "
        f"(seed {meta['seed']}); (b) the time split: the first {1 - TIME_FRACTION:.0%} of u.data by timestamp "
        "trains, and the users of the rest who never appear in training are the cold users. Their ratings of "
        "movies the model was not trained on are dropped (counted below). Only cold users with more than "
        f"{max(REVEALS)} remaining ratings are kept, so every point has the same users.",
        f"* Each cold user is scored from their profile (age, gender, occupation, zip) plus their first n in "
        f"{{{', '.join(map(str, REVEALS))}}} ratings, earliest first by timestamp (ties in file order). RMSE on "
        "the rest of their ratings (clipped to 1..5); NDCG@10 / Recall@10 with relevant = rating >= 4, "
        "candidates = every trained movie not revealed; users with no relevant movie are skipped.",
        "* The targets shift with n (the revealed ratings leave them), so the points of one line are not "
        "comparable with each other. Hence two more lines: **hybrid, profile only, same targets** (the same "
        "model with no ratings, scored on n's targets and candidates): the gain of n ratings is the difference; "
        f"and **fixed targets**: the hybrid with n ratings revealed, always scored on each user's ratings after "
        f"the {max(REVEALS)}th (candidates: every movie but the first {max(REVEALS)}), so its points are "
        "comparable across n.",
        "* **Cold movies** are held out of training entirely (every rating of theirs removed): (a) a random "
        f"{MOVIE_FRACTION:.0%} of the movies (seed {meta['seed']}); (b) the {MOVIE_FRACTION:.0%} most recently "
        "released (u.item's release date; most movies carry only 1 January of their year, so ties at the cut "
        "go to the higher id). The models are trained on the rest of u.data; the held-out movies are added "
        "through the upsert path (`Scorer.with_catalog`, exactly what the server's UpsertMovies does) with "
        "their title, year and genres only. Their ratings by known users are the targets: RMSE with the user's "
        "training history as input and the user's stored profile; ranking: every movie the user did not rate "
        "in training is a candidate (cold movies compete with every warm one), percentile rank of each held-out "
        "movie the user rated >= 4 (liked) or at all (rated), 0 = first, 0.5 = random; HR@10 (and NDCG@10) "
        "over users with relevant = held-out movies rated >= 4.",
        "* **Baselines** (`movierec.trainer.coldstart_metrics`, fitted on the same training ratings): "
        "popularity (most ratings, then mean, then id: the scorer's own popularity order; its rating "
        "counterpart is the movie's mean rating); popularity by segment (gender x ml-1m age group: most "
        "ratings from the segment, ties by global popularity; rating counterpart: the movie's mean within "
        f"the segment shrunk to its mean by {cm.SEGMENT_MEAN_SHRINK:g} pseudo-ratings); the content model "
        f"(rating = global mean + ridge on genres and release decade (l2 {cm.CONTENT_RIDGE:g}) + the movie's "
        f"residual shrunk by {cm.ITEM_SHRINK:g} (0 for a new movie) + segment x genre offsets (shrunk by "
        f"{cm.SEGMENT_SHRINK:g}) + the user's own bias and genre offsets from the ratings they revealed "
        f"(shrunk by {cm.USER_SHRINK:g} / {cm.USER_GENRE_SHRINK:g}); ranks by predicted rating); the warm "
        "model folding in the revealed ratings (the main models via the scorer without a profile; for n = 0 "
        "the scorer's popularity path). For cold movies: genre mean (the mean training rating of the movies "
        "sharing at least one genre with it; it also ranks every candidate by that), global mean, the content "
        "model, and random placement. The shrinkage constants were fixed a priori, not tuned.",
        "",
    ]
    for split in dict.fromkeys(r["split"] for r in users):
        rows = [r for r in users if r["split"] == split]
        inf = info["users"][split]
        ns = sorted({r["n"] for r in rows})
        out += [
            f"## New users: {SPLIT_TITLES[('users', split)]}",
            "",
            f"{inf['users']} cold users with more than {max(REVEALS)} ratings ({inf['ratings']:,} ratings; "
            f"{inf['users_with_profile']} with a profile) out of {inf['cold_users']} cold users; "
            f"{inf['ratings_of_untrained_movies']} ratings of movies absent from training dropped. Training: "
            f"{inf['train_ratings']:,} ratings of {inf['train_users']} users.",
            "",
        ]
        for metric, title in (("ndcg@10", "NDCG@10"), ("recall@10", "Recall@10"), ("rmse", "RMSE")):
            out += [f"**{title}** by number of revealed ratings n", "",
                    "| model | " + " | ".join(f"n={n}" for n in ns) + " |",
                    "|---|" + "---|" * len(ns)]  # fmt: skip
            for key, label in USER_MODELS.items():
                vals = {r["n"]: r[metric] for r in rows if r["model"] == key}
                if vals:
                    out.append(f"| {label} | " + " | ".join(_fmt(vals.get(n)) for n in ns) + " |")
            out.append("")
        out += ["**Gain of n ratings** (hybrid with n ratings minus the hybrid with the profile only, same "
                "targets and candidates" + ("; mean over seeds, each seed's gain in brackets" if
                result["meta"].get("train_seeds", 1) > 1 else "") + ")", "",
                "| n | NDCG@10 | Recall@10 | RMSE | target ratings |", "|---|---|---|---|---|"]  # fmt: skip
        for n in ns:
            a, b = _pick(rows, model="hybrid", n=n), _pick(rows, model="hybrid-profile-only", n=n)
            if a and b:
                cells = [_gain_cell(a, b, m) for m in ("ndcg@10", "recall@10", "rmse")]
                out.append(f"| {n} | " + " | ".join(cells) + f" | {a['ratings']:,} |")
        out.append("")
    out += _losses(users, movies)
    if movies:
        out += [
            "## New movies",
            "",
            "| split | model | RMSE | percentile rank (liked) | percentile rank (rated) | HR@10 | NDCG@10 |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in movies:
            out.append(
                f"| {r['split']} | {MOVIE_MODELS[r['model']]} | {_fmt(r['rmse'])} | {_fmt(r['percentile_liked'], 3)} | "
                f"{_fmt(r['percentile_rated'], 3)} | {_fmt(r['hit@10'])} | {_fmt(r['ndcg@10'])} |"
            )
        out.append("")
        for split in dict.fromkeys(r["split"] for r in movies):
            inf = info["movies"][split]
            out.append(
                f"* {SPLIT_TITLES[('movies', split)]}: {inf['cold_movies']} held-out movies, {inf['ratings']:,} "
                f"ratings of them by {inf['users']} known users ({inf.get('liked_ratings', 0):,} rated >= 4; "
                f"{inf['ratings_of_unknown_users']} by users absent from training dropped); training: "
                f"{inf['train_ratings']:,} ratings of {inf['train_movies']} movies."
            )
        out.append("")
    return "\n".join(out)


def _gain_cell(a: dict[str, Any], b: dict[str, Any], metric: str) -> str:
    cell = f"{a[metric] - b[metric]:+.4f}"
    seeds_a, seeds_b = a.get(f"{metric}_seeds", []), b.get(f"{metric}_seeds", [])
    if len(seeds_a) > 1 and len(seeds_a) == len(seeds_b):
        cell += " [" + " / ".join(f"{x - y:+.4f}" for x, y in zip(seeds_a, seeds_b, strict=True)) + "]"
    return cell


def _losses(users: Sequence[dict[str, Any]], movies: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: every point where a baseline (or the warm model) does better than the hybrid."""
    lines: list[str] = []
    lower = {"rmse", "percentile_liked"}
    for split in dict.fromkeys(r["split"] for r in users):
        rows = [r for r in users if r["split"] == split]
        for metric, title in (("ndcg@10", "NDCG@10"), ("recall@10", "Recall@10"), ("rmse", "RMSE")):
            sign = -1.0 if metric in lower else 1.0
            beats: dict[str, list[str]] = {}
            for h in (r for r in rows if r["model"] == "hybrid"):
                for r in rows:
                    if r["n"] == h["n"] and r["model"] not in ("hybrid", "hybrid-profile-only", "hybrid-fixed") and (
                        sign * (r[metric] - h[metric]) > 0
                    ):
                        beats.setdefault(r["model"], []).append(f"n={h['n']} ({r[metric]:.4f} vs {h[metric]:.4f})")
            for model, where in beats.items():
                lines.append(f"* new users, {split}, {title}: **{model}** beats the hybrid at " + ", ".join(where))
    for split in dict.fromkeys(r["split"] for r in movies):
        by_model = {r["model"]: r for r in movies if r["split"] == split}
        hm = by_model.get("hybrid")
        if hm is None:
            continue
        for metric, title in (("rmse", "RMSE"), ("percentile_liked", "percentile rank (liked)"), ("hit@10", "HR@10")):
            sign = -1.0 if metric in lower else 1.0
            for model, r in by_model.items():
                if model != "hybrid" and np.isfinite(r[metric]) and sign * (r[metric] - hm[metric]) > 0:
                    lines.append(f"* new movies, {split}, {title}: **{model}** beats the hybrid "
                                 f"({r[metric]:.4f} vs {hm[metric]:.4f})")  # fmt: skip
    head = ["## Where the hybrid loses", "", "Every point where a baseline (or the warm model) does better than the "
            "hybrid, listed by the same run (none: the hybrid leads everywhere).", ""]  # fmt: skip
    return head + (lines or ["* none"]) + [""]


COLORS = {
    "hybrid": "tab:blue", "hybrid-profile-only": "tab:blue", "hybrid-fixed": "tab:cyan", "warm": "tab:orange",
    "popularity": "tab:gray", "segment-popularity": "tab:green", "content": "tab:red",
    "genre-mean": "tab:purple", "global-mean": "tab:gray", "random": "tab:brown",
}  # fmt: skip
STYLES = {"hybrid-profile-only": "--", "hybrid-fixed": ":"}


def _clip_outliers(ax: Any, values: Sequence[float]) -> None:
    """Keep far-off points (e.g. a fold-in blowing up at one rating) from flattening every other line: the
    y axis stops above the bulk of the values and each point beyond is written at the top edge."""
    vals = np.array([v for v in values if np.isfinite(v)], dtype=float)
    if vals.size < 4:
        return
    lo, q75 = float(vals.min()), float(np.quantile(vals, 0.75))
    hi = q75 + 2.0 * (q75 - lo) + 0.005
    if vals.max() <= hi:
        return
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    for line in ax.get_lines():
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            if y > hi + pad:
                ax.annotate(f"{y:.3f}", (x, hi + pad), xytext=(0, -12), textcoords="offset points", ha="center",
                            fontsize=8, color=line.get_color(), arrowprops={"arrowstyle": "->", "color": line.get_color()})  # fmt: skip


def report_png(result: dict[str, Any], path: Path) -> None:
    """Cold users: one panel per (split, metric) against n; cold movies: bars per metric, one per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users, movies = result["users"], result["movies"]
    user_splits = list(dict.fromkeys(r["split"] for r in users))
    n_rows = len(user_splits) + (1 if movies else 0)
    fig, axes = plt.subplots(max(n_rows, 1), 3, figsize=(16, 4.6 * max(n_rows, 1)), dpi=80, squeeze=False)
    metrics = (("ndcg@10", "NDCG@10"), ("recall@10", "Recall@10"), ("rmse", "RMSE (lower is better)"))
    short = {"hybrid": "hybrid", "hybrid-profile-only": "hybrid, profile only (same targets)",
             "hybrid-fixed": "hybrid, fixed targets (ratings 11+)", "warm": "warm model, no profile",
             "popularity": "popularity", "segment-popularity": "popularity by segment",
             "content": "content model"}  # fmt: skip
    for i, split in enumerate(user_splits):
        rows = [r for r in users if r["split"] == split]
        inf = result["info"]["users"][split]
        for j, (metric, title) in enumerate(metrics):
            ax = axes[i, j]
            for key in USER_MODELS:
                pts = sorted((r["n"], r[metric]) for r in rows if r["model"] == key)
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, STYLES.get(key, "-"), marker="o", ms=4, color=COLORS[key], label=short[key])
                    sds = [r.get(f"{metric}_sd", 0.0) for r in sorted(rows, key=lambda r: r["n"]) if r["model"] == key]
                    if key.startswith("hybrid") and any(sds):  # the spread over training seeds
                        ys_a, sd_a = np.asarray(ys, dtype=float), np.asarray(sds, dtype=float)
                        ax.fill_between(xs, ys_a - sd_a, ys_a + sd_a, color=COLORS[key], alpha=0.12, linewidth=0)
            if metric == "rmse":
                _clip_outliers(ax, [r[metric] for r in rows])
            ax.set_title(f"new users, {split} split ({inf['users']} users): {title}", fontsize=10)
            ax.set_xlabel("ratings revealed (earliest first)")
            ax.set_xticks(REVEALS)
            ax.grid(alpha=0.3)
    if user_splits:
        axes[0, 0].legend(fontsize=8, loc="best")
    if movies:
        i = n_rows - 1
        splits = list(dict.fromkeys(r["split"] for r in movies))
        width = 0.8 / max(len(splits), 1)
        panels = (("rmse", "RMSE (lower is better)"), ("percentile_liked", "percentile rank of liked (lower is better)"),
                  ("hit@10", "HR@10"))  # fmt: skip
        for j, (metric, title) in enumerate(panels):
            ax = axes[i, j]
            models = [m for m in MOVIE_MODELS if any(r["model"] == m and np.isfinite(r[metric]) for r in movies)]
            x = np.arange(len(models))
            for s, split in enumerate(splits):
                vals = [next((r[metric] for r in movies if r["split"] == split and r["model"] == m), math.nan)
                        for m in models]  # fmt: skip
                ax.bar(x + s * width, vals, width, label=SPLIT_TITLES[("movies", split)])
            ax.set_xticks(x + width * (len(splits) - 1) / 2)
            ax.set_xticklabels(models, fontsize=9)
            ax.set_title(f"new movies (upserted): {title}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if metric == "rmse":
                vals_all = np.array([r["rmse"] for r in movies], dtype=float)
                vals_all = vals_all[np.isfinite(vals_all)]
                if vals_all.size:
                    ax.set_ylim(vals_all.min() * 0.95, vals_all.max() * 1.02)
        axes[i, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# -- orchestration ---------------------------------------------------------------------------------------
def _train(
    train: pd.DataFrame, data: ColdStartData, preset: Preset, out: Path, *, name: str, device: str, log: Log
) -> Scorer:
    t0 = time.perf_counter()
    log(f"training {preset.name} on {name}: {len(train):,} ratings ...")
    run_training(
        train, None, data.catalog, preset, out, overrides={"train": {"device": device}},
        dataset=f"cold start {name}", progress=False, profiles=data.profiles,
    )  # fmt: skip
    log(f"trained {name} in {time.perf_counter() - t0:.1f}s")
    return Scorer.load(out, "cpu" if device == "cpu" else "auto")


def with_train_seed(preset: Preset, offset: int) -> Preset:
    """`preset` with every model's training seed moved by `offset` (0: the preset itself)."""
    if offset == 0:
        return preset
    return replace(
        preset,
        train=replace(preset.train, seed=preset.train.seed + offset),
        ranking_train=None if preset.ranking_train is None else replace(preset.ranking_train, seed=preset.ranking_train.seed + offset),
        side_models=tuple((role, model, replace(t, seed=t.seed + offset)) for role, model, t in preset.side_models),
    )  # fmt: skip


METRIC_KEYS = ("rmse", "ndcg@10", "recall@10", "percentile_liked", "percentile_rated", "hit@10")


def average_seeds(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of several training seeds (each with a "seed") as one row per `keys` group, in first-seen order:
    each metric's mean, its standard deviation over the seeds (`<metric>_sd`, 0 for one seed) and the
    per-seed values (`<metric>_seeds`, in seed order); other fields from the first seed's row."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for group in groups.values():
        group = sorted(group, key=lambda r: r.get("seed", 0))
        row = {k: v for k, v in group[0].items() if k != "seed"}
        row["seeds"] = len(group)
        for metric in METRIC_KEYS:
            if metric in row:
                vals = np.array([g[metric] for g in group], dtype=float)
                row[metric] = float(vals.mean())
                row[f"{metric}_sd"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
                row[f"{metric}_seeds"] = [float(v) for v in vals]
        out.append(row)
    return out


def run_cold_start(
    data: ColdStartData,
    out_dir: str | Path,
    *,
    doc: str | Path | None = None,
    preset: Preset | str = "best",
    user_splits: Sequence[str] = USER_SPLITS,
    movie_splits: Sequence[str] = MOVIE_SPLITS,
    reveals: Sequence[int] = REVEALS,
    seed: int = SEED,
    train_seeds: int = 1,
    device: str = "cpu",
    command: str = "movierec report --cold-start",
    dataset: str = "MovieLens 100K",
    log: Log | None = None,
) -> dict[str, Any]:
    """Train once per split and training seed, evaluate, write cold-start.json and cold-start.png into
    `out_dir` and the markdown to `doc` (default `out_dir`/cold-start.md). `seed` fixes the splits; training
    seeds 0..`train_seeds`-1 (offsets to the preset's own) are averaged. Returns the result (rows averaged
    over the seeds, the per-seed rows, counts, floors)."""
    import torch

    if train_seeds < 1:
        raise ValueError(f"train_seeds must be >= 1, got {train_seeds}")
    log = log or _stderr
    preset = get_preset(preset) if isinstance(preset, str) else preset
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc_path = Path(doc) if doc is not None else out / "cold-start.md"
    t_all = time.perf_counter()
    user_rows: list[dict[str, Any]] = []
    movie_rows: list[dict[str, Any]] = []
    info: dict[str, dict[str, Any]] = {"users": {}, "movies": {}}
    with tempfile.TemporaryDirectory(prefix="movierec-coldstart-") as tmp:
        for s in range(train_seeds):
            seeded = with_train_seed(preset, s)
            tag = f", training seed {s}" if train_seeds > 1 else ""
            for split in user_splits:
                train, cold = cold_user_split(data.ratings, split, seed)
                scorer = _train(train, data, seeded, Path(tmp) / f"users-{split}-{s}",
                                name=f"cold users {split}{tag}", device=device, log=log)  # fmt: skip
                rows, inf = evaluate_cold_users(scorer, train, cold, data.profiles, split=split, reveals=reveals, log=log)
                user_rows += [{**r, "seed": s} for r in rows]
                info["users"][split] = inf
            for split in movie_splits:
                ids = cold_movie_ids(data.ratings, data.release, split, seed)
                is_cold = data.ratings["item"].isin(ids).to_numpy()
                train, cold = data.ratings[~is_cold].reset_index(drop=True), data.ratings[is_cold].reset_index(drop=True)
                scorer = _train(train, data, seeded, Path(tmp) / f"movies-{split}-{s}",
                                name=f"cold movies {split}{tag}", device=device, log=log)  # fmt: skip
                rows, inf = evaluate_cold_movies(scorer, train, cold, data.catalog, data.profiles, split=split,
                                                 seed=seed, log=log)  # fmt: skip
                movie_rows += [{**r, "seed": s} for r in rows]
                info["movies"][split] = inf
    users = average_seeds(user_rows, ("split", "model", "n"))
    movies = average_seeds(movie_rows, ("split", "model"))
    floors = check_floors(users, movies)
    png_path = out / "cold-start.png"
    json_path = out / "cold-start.json"
    result: dict[str, Any] = {
        "meta": {
            "command": command,
            "dataset": dataset,
            "preset": preset.name,
            "seed": seed,
            "train_seeds": train_seeds,
            "reveals": list(reveals),
            "k": K,
            "device": device,
            "threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - t_all,
            "json": _rel(json_path, doc_path.parent),
            "png": _rel(png_path, doc_path.parent),
        },
        "floors": floors,
        "users": users,
        "movies": movies,
        "per_seed": {"users": user_rows, "movies": movie_rows},
        "info": info,
    }
    write_outputs(result, json_path, png_path, doc_path)
    for f in floors:
        log(f"{'PASS' if f['pass'] else 'FAIL'}  {f['split']:15s} {f['floor']}: {f['value']}")
    log(f"cold-start report written in {result['meta']['seconds']:.0f}s: {doc_path}, {png_path}, {json_path}")
    return result


def write_outputs(result: dict[str, Any], json_path: Path, png_path: Path, doc_path: Path) -> None:
    """Write a result's JSON, plot and markdown (also used to re-render from a saved cold-start.json)."""
    json_path.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    report_png(result, png_path)
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(markdown(result))


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def run_coldstart_report(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    doc: str | Path | None = None,
    preset: str = "best",
    device: str = "cpu",
    threads: int | None = None,
    train_seeds: int = TRAIN_SEEDS,
    command: str = "movierec report --cold-start",
    log: Log | None = None,
) -> dict[str, Any]:
    """The cold-start report on ml-100k (fetched into `data_dir` if needed), averaged over `train_seeds`."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    data = load_ml100k(data_dir)
    return run_cold_start(data, out_dir, doc=doc, preset=preset, device=device, train_seeds=train_seeds,
                          command=command, log=log)  # fmt: skip


__all__ = [
    "ColdStartData",
    "average_seeds",
    "check_floors",
    "cold_movie_ids",
    "cold_user_split",
    "evaluate_cold_movies",
    "evaluate_cold_users",
    "load_ml100k",
    "release_keys",
    "run_cold_start",
    "run_coldstart_report",
    "with_train_seed",
    "write_outputs",
]
