"""Cold start in the core: feature vocabulary and encoding, movie tables, extended id maps, the hybrid models,
the scorer's routing (profile / ratings / neither) and movies added after training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from movierec.core.features import FeatureSchema, MovieTable, Profiles, age_group, decade
from movierec.core.sparse import Csr, IdMap


def _profiles(rows: list[dict[str, object]]) -> Profiles:
    return Profiles.from_frame(pd.DataFrame(rows))


def test_age_groups_and_decades() -> None:
    assert age_group([0, 1, 17, 18, 24, 25, 49, 50, 55, 56, 120]).tolist() == [
        "", "<18", "<18", "18-24", "18-24", "25-34", "45-49", "50-55", "50-55", "56+", "56+",
    ]  # fmt: skip
    assert decade([0, 1895, 1929, 1930, 1995, 2024]).tolist() == ["", "<1930", "<1930", "1930s", "1990s", "2020s"]


def test_profiles_from_partial_frames() -> None:
    p = _profiles([{"age": 25, "gender": "f", "occupation": " Student ", "zip": "02139"}, {}, {"zip": None}])
    assert p.present.tolist() == [True, False, False]
    assert p.gender.tolist() == ["F", "", ""] and p.occupation.tolist() == ["student", "", ""]
    assert p.zip.tolist() == ["02139", "", ""] and p.age.tolist() == [25, 0, 0]
    no_columns = Profiles.from_frame(pd.DataFrame(index=range(2)))
    assert len(no_columns) == 2 and not no_columns.present.any()


def test_schema_vocabulary_and_encoding_treat_unknown_values_as_unknown() -> None:
    train = _profiles([
        {"age": 20, "gender": "F", "occupation": "student", "zip": "55105"},
        {"age": 40, "gender": "M", "occupation": "engineer", "zip": "K1A"},
    ])  # fmt: skip
    movies = MovieTable(
        np.array([1, 2, 3]),
        ["Toy Story (1995)", "Story of Love (1990)", "Love Story Again (2001)"],
        np.array([1995, 1990, 2001]),
        [["Animation", "Comedy"], ["Romance"], []],
    )
    schema = FeatureSchema.build(train, movies, min_word_count=2)
    assert schema.user_features == (
        "gender:F", "gender:M", "age:18-24", "age:35-44", "segment:F|18-24", "segment:M|35-44",
        "occupation:engineer", "occupation:student", "zip:5",
    )  # fmt: skip
    assert schema.values("occupation") == ["engineer", "student"]
    assert schema.item_features == (
        "genre:Animation", "genre:Comedy", "genre:Romance", "year:1990s", "year:2000s", "word:love", "word:story",
    )  # fmt: skip
    users = schema.encode_users(_profiles([
        {"age": 22, "gender": "F", "occupation": "pilot", "zip": "59999"},  # unseen occupation: no column
        {},
    ]))  # fmt: skip
    names = np.array(schema.user_features)
    assert names[users[0] == 1].tolist() == ["gender:F", "age:18-24", "segment:F|18-24", "zip:5"]
    assert not users[1].any()
    items = schema.encode_items(MovieTable(np.array([9]), ["A Love Story (2010)"], np.array([2010]), [["Western", "Comedy"]]))
    assert np.array(schema.item_features)[items[0] == 1].tolist() == ["genre:Comedy", "word:love", "word:story"]


def test_movie_table_merge_replaces_by_id_and_sorts() -> None:
    base = MovieTable(np.array([5, 2]), ["five", "two"], np.array([2000, 1990]), [["A"], []])
    merged = base.merged(MovieTable(np.array([2, 7]), ["TWO", "seven"], np.array([0, 2020]), [["B"], ["C"]]))
    assert merged.movie_ids.tolist() == [2, 5, 7] and merged.titles == ["TWO", "five", "seven"]
    assert merged.genres == [["B"], ["A"], ["C"]]
    assert merged.without([5]).movie_ids.tolist() == [2, 7]
    assert MovieTable.from_frame(merged.to_frame()).titles == merged.titles


def test_extended_id_map_keeps_trained_indices() -> None:
    m = IdMap.from_ids([30, 10, 20]).extended([15, 5])
    assert m.raw.tolist() == [10, 20, 30, 15, 5]
    assert m.to_index([5, 10, 15, 20, 30, 99]).tolist() == [4, 0, 3, 1, 2, -1]


def _hybrid(kind: str, n_items: int = 6, nu: int = 3, nf: int = 4) -> torch.nn.Module:
    from movierec.core.config import ModelConfig
    from movierec.core.models import build_model

    cfg = ModelConfig(kind=kind, n_items=n_items, hidden=(8,), activation="tanh",
                      extra={"n_user_features": nu, "n_item_features": nf, "dim": 8})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        model.item_features.copy_(torch.rand(n_items, nf))
    return model.eval()


@pytest.mark.parametrize("kind", ["hybrid-rating", "hybrid-ranking"])
def test_added_movies_are_scored_from_their_features_alone(kind: str) -> None:
    model = _hybrid(kind)
    x = torch.zeros(2, 6 + 3)
    x[0, 1] = 4.0
    users = torch.rand(2, 3)
    added = torch.tensor([[1.0, 0, 1, 0], [1.0, 0, 1, 0], [0, 1.0, 0, 0]])
    out = model.scores_side(x, users, added)
    assert out.shape == (2, 9)
    assert torch.allclose(out[:, 6], out[:, 7]) and not torch.allclose(out[:, 6], out[:, 8])
    # a rating of an added movie is input signal too
    x2 = x.clone()
    x2[0, 8] = 5.0
    assert not torch.allclose(model.scores_side(x2, users, added)[0], out[0])
    # the profile is input signal
    assert not torch.allclose(model.scores_side(x, users * 0, added)[1], out[1])


def test_place_by_rank_puts_added_movies_where_the_side_model_ranks_them() -> None:
    from movierec.core.scoring import _place_by_rank

    main = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    side = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    placed = _place_by_rank(main, side, torch.tensor([[0.5, 2.5, 9.0]]))[0]
    assert placed[0] < 10 and 20 < placed[1] < 30 and placed[2] > 40
    # the main model's own order of the trained movies is what counts, not the side model's
    placed = _place_by_rank(torch.tensor([[40.0, 30.0, 20.0, 10.0]]), side, torch.tensor([[3.5]]))[0]
    assert 30 < placed[0] < 40


@pytest.fixture(scope="module")
def cold_scorer(tiny_cold_artifact: Path) -> object:
    from movierec.core.scoring import Scorer

    return Scorer.load(tiny_cold_artifact, device="cpu")


def test_cold_artifact_records_its_side_information(cold_scorer: object, tiny_profiles: pd.DataFrame) -> None:
    from movierec.core.artifact import load_artifact
    from movierec.core.scoring import Scorer

    assert isinstance(cold_scorer, Scorer)
    info = cold_scorer.info
    assert info.profile_aware and info.metadata_aware and info.n_trained_items == cold_scorer.n_items
    assert set(cold_scorer.features.values("occupation")) <= {"student", "engineer", "artist", "writer", "retired"}
    assert cold_scorer.features.values("genre") and cold_scorer.features.values("year")
    art = load_artifact(cold_scorer.artifact.path)  # type: ignore[arg-type]
    assert art.profiles is not None and art.profiles["user"].tolist() == art.users.raw.tolist()
    zips = dict(zip(tiny_profiles["user"], tiny_profiles["zip"], strict=True))
    assert art.profiles["zip"].tolist() == [zips[u] for u in art.users.raw]  # leading zeros kept


def test_rows_without_ratings_or_profile_get_popularity_in_a_fixed_order(cold_scorer: object) -> None:
    from movierec.core.scoring import Scorer

    assert isinstance(cold_scorer, Scorer)
    h = cold_scorer.history
    counts = np.bincount(h.indices, minlength=cold_scorer.n_items)
    means = np.bincount(h.indices, weights=h.values, minlength=cold_scorer.n_items) / np.maximum(counts, 1)
    expected = sorted(range(cold_scorer.n_items), key=lambda i: (-counts[i], -means[i], cold_scorer.items.raw[i]))
    items, scores = cold_scorer.topk(Csr.empty(2, cold_scorer.n_items), 10)
    assert items[0].tolist() == expected[:10] == items[1].tolist()
    assert (np.diff(scores[0]) < 0).all()  # strictly descending: no tie left to chance


def test_profiles_change_what_a_new_user_gets(cold_scorer: object) -> None:
    from movierec.core.scoring import Scorer

    assert isinstance(cold_scorer, Scorer)
    empty = Csr.empty(3, cold_scorer.n_items)
    prof = _profiles([
        {"age": 16, "gender": "F", "occupation": "student"},
        {"age": 65, "gender": "M", "occupation": "retired"},
        {"age": 16, "gender": "F", "occupation": "student"},
    ])  # fmt: skip
    items, scores = cold_scorer.topk(empty, cold_scorer.n_items, profiles=prof)
    popular, _ = cold_scorer.topk(Csr.empty(1, cold_scorer.n_items), cold_scorer.n_items)
    assert items[0].tolist() == items[2].tolist()  # same profile, same answer
    assert not np.allclose(scores[0], scores[1])  # the profile is used
    assert items[0].tolist() != popular[0].tolist()
    targets = Csr(np.array([0, 3, 6, 9]), np.tile(np.array([0, 1, 2]), 3), np.ones(9, np.float32), cold_scorer.n_items)
    pred = cold_scorer.predict(empty, targets, profiles=prof)
    scale = cold_scorer.rating_scale
    assert np.allclose(pred[0:3], pred[6:9]) and not np.allclose(pred[0:3], pred[3:6])
    assert ((pred >= scale.min) & (pred <= scale.max)).all()


def test_known_users_keep_the_main_models_answers(cold_scorer: object) -> None:
    from movierec.core.scoring import Scorer

    assert isinstance(cold_scorer, Scorer)
    users = np.arange(8)
    rows = cold_scorer.history.rows(users)
    plain = cold_scorer.topk(rows, 10)
    with_stored = cold_scorer.topk(rows, 10, profiles=cold_scorer.known_profiles.take(users))
    assert np.array_equal(plain[0], with_stored[0]) and np.allclose(plain[1], with_stored[1])
    # with a present profile the side model answers instead
    present = dataclasses.replace(cold_scorer.known_profiles.take(users), present=np.ones(8, bool))
    assert not np.array_equal(cold_scorer.topk(rows, 10, profiles=present)[0], plain[0])


def test_with_catalog_adds_candidates_and_updates_metadata(cold_scorer: object) -> None:
    from movierec.core.scoring import Scorer

    assert isinstance(cold_scorer, Scorer)
    n = cold_scorer.n_items
    trained_id = int(cold_scorer.items.raw[0])
    overlay = MovieTable(
        np.array([trained_id, 5000, 4000]),
        ["Renamed", "Brand New Comedy (2024)", "Another One (2023)"],
        np.array([1999, 2024, 2023]),
        [["Drama"], ["Comedy"], ["Action", "Unknown Genre"]],
    )
    view = cold_scorer.with_catalog(overlay)
    assert view.n_items == n + 2 and view.n_trained == n and cold_scorer.n_items == n  # the base is unchanged
    assert view.items.to_index([4000, 5000, trained_id]).tolist() == [n, n + 1, 0]
    assert view.catalog.titles[0] == "Renamed" and view.catalog.titles[n + 1] == "Brand New Comedy (2024)"
    assert cold_scorer.catalog.titles[0] != "Renamed"
    users = np.arange(4)
    rows = view.history.rows(users)
    assert rows.n_cols == n + 2
    # forced in by an include list, the new movie is recommended; free choice ranks all n + 2 movies
    include = Csr(np.array([0, 1, 1, 1, 1]), np.array([n + 1]), np.ones(1, np.float32), n + 2)
    items, _ = view.topk(rows, 3, profiles=view.known_profiles.take(users), include=include,
                         include_rows=np.array([True, False, False, False]))  # fmt: skip
    assert items[0].tolist() == [n + 1, -1, -1]
    everything, scores = view.topk(rows, n + 2, profiles=view.known_profiles.take(users))
    assert all({n, n + 1} <= set(r[np.isfinite(s)].tolist()) for r, s in zip(everything, scores, strict=True))
    # predicted from metadata for known users; a rating of the new movie is accepted as input
    targets = Csr(np.array([0, 2, 2, 2, 2]), np.array([n, n + 1]), np.ones(2, np.float32), n + 2)
    pred = view.predict(rows, targets, profiles=view.known_profiles.take(users))
    assert pred.shape == (2,) and np.isfinite(pred).all()
    rated_new = Csr(np.array([0, 1]), np.array([n + 1]), np.array([5.0], np.float32), n + 2)
    top, _ = view.topk(rated_new, 5, profiles=_profiles([{"age": 30}]))
    assert n + 1 not in top[0].tolist()
    # the view is rebuilt from the whole overlay: dropping a movie drops its column
    assert cold_scorer.with_catalog(overlay.without([4000])).n_items == n + 1


def test_reveal_split_takes_the_earliest_ratings() -> None:
    from movierec.trainer.fit.side import reveal_split

    m = Csr(np.array([0, 3, 5]), np.array([0, 2, 4, 1, 3]), np.array([5, 4, 3, 2, 1], np.float32), 5)
    order = Csr(m.indptr, m.indices, np.array([3, 1, 2, 2, 1], np.float32), 5)
    shown, rest = reveal_split(m, np.array([1, 0]), 1, seed=0, order=order)
    assert shown.to_coo()[1].tolist() == [3, 2] and shown.values.tolist() == [1.0, 4.0]
    assert rest.indptr.tolist() == [0, 1, 3] and rest.indices.tolist() == [1, 0, 4]


def test_corruption_hides_ratings_profiles_and_keeps_first_ratings() -> None:
    from movierec.core.models.hybrid import HybridSettings
    from movierec.trainer.fit.side import _corrupt

    model = _hybrid("hybrid-ranking")
    x = torch.tensor([[5.0, 4, 3, 0, 2, 1]] * 4)
    users = torch.ones(4, 3)
    gen = torch.Generator().manual_seed(0)
    model.settings = dataclasses.replace(HybridSettings(), profile_only=1.0, profile_drop=0.0)
    x_in, u_in = _corrupt(x, users, model, gen, None)  # type: ignore[arg-type]
    assert not x_in.any() and torch.equal(u_in, users)
    model.settings = dataclasses.replace(HybridSettings(), profile_only=0.0, few_ratings=1.0, max_revealed=1,
                                         profile_drop=1.0)  # fmt: skip
    when = torch.tensor([[2.0, 1, 3, 0, 4, 5]] * 4)
    x_in, u_in = _corrupt(x, users, model, gen, when)  # type: ignore[arg-type]
    assert torch.equal(x_in, torch.tensor([[0.0, 4, 0, 0, 0, 0]] * 4)) and not u_in.any()


def test_segment_prior_rows_follow_the_users_segment() -> None:
    from movierec.core.config import ModelConfig
    from movierec.core.models import build_model

    cfg = ModelConfig(kind="hybrid-ranking", n_items=3, hidden=(4,), extra={
        "n_user_features": 3, "n_item_features": 1, "dim": 4, "n_segments": 2, "prior_weight": 1.0})  # fmt: skip
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.segment_columns.copy_(torch.tensor([1, 2]))
        model.segment_prior.copy_(torch.tensor([[-1.0, -2, -3], [-4, -5, -6], [-7, -8, -9]]))
    users = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 0]])  # segment 2, segment 1, none (overall row)
    assert model.prior(users, 0).tolist() == [[-4, -5, -6], [-1, -2, -3], [-7, -8, -9]]
    share = torch.tensor([-4.0, -5, -6]).exp()
    typical = float((share * torch.tensor([-4.0, -5, -6])).sum() / share.sum())  # a typical liked movie's prior
    got = model.prior(users[:1], 2)
    assert got[0, :3].tolist() == [-4, -5, -6] and torch.allclose(got[0, 3:], torch.tensor([typical, typical]))
    assert -5 < typical < -4  # above the row's mean (-5): added movies are not sunk below the rarely liked ones
    x = torch.zeros(3, 3)
    with_prior = model.scores_side(x, users, torch.zeros(0, 1))
    model.prior_weight.fill_(0.0)
    assert torch.allclose(with_prior - model.scores_side(x, users, torch.zeros(0, 1)), model.prior(users, 0))


def test_segment_prior_counts_the_liked_movies_of_each_segment() -> None:
    """The ranking model learns the movies rated at least `like_threshold`; its segment prior estimates the same
    thing: a movie a segment watched often but rated low ranks below one it rated high."""
    from movierec.core.config import ModelConfig
    from movierec.core.models import build_model
    from movierec.trainer.fit.side import ColdSplit, _fit_segment_prior

    cfg = ModelConfig(kind="hybrid-ranking", n_items=3, hidden=(4,), extra={
        "n_user_features": 2, "n_item_features": 1, "dim": 4, "n_segments": 2, "like_threshold": 4.0})  # fmt: skip
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.segment_columns.copy_(torch.tensor([0, 1]))
    # segment 0 (users 0-2): movie 0 rated 2 by all three, movie 1 rated 5 by one; segment 1 (users 3-4): movie 2 liked
    rows = np.array([0, 1, 2, 0, 3, 4])
    cols = np.array([0, 0, 0, 1, 2, 2])
    vals = np.array([2.0, 2, 2, 5, 4, 5])
    train = Csr.from_coo(rows, cols, vals, 5, 3)
    users = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1], [0, 1]])
    empty = ColdSplit(np.zeros(0, np.int64), {}, {})
    weight, _ = _fit_segment_prior(model, train, np.arange(5), users, empty, torch.device("cpu"), None)  # type: ignore[arg-type]
    prior = model.segment_prior
    assert prior[0, 1] > prior[0, 0]  # liked once beats watched three times and rated 2
    assert prior[1, 2] > prior[1, 0] and prior[1, 2] > prior[1, 1]
    assert torch.allclose(prior.exp().sum(dim=1), torch.ones(3))  # each row a distribution over the movies
    assert weight == 0.0  # no validation users: nothing to pick on, the prior stays off
