"""The catalog overlay (movies added or updated while serving): merging, rebasing on a new model's trained
catalog, the JSON file (atomic replacement, refusal of a corrupt one), and the engine applying it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from movierec.core.features import MovieTable
from movierec.server.catalog_overlay import FORMAT, Overlay, OverlayError, OverlayFile

TRAINED = np.arange(1, 11, dtype=np.int64)  # a model trained on movies 1..10


def table(*rows: tuple[int, str]) -> MovieTable:
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return MovieTable(ids, [r[1] for r in rows], np.full(len(rows), 2000, np.int64), [["Drama"] for _ in rows])


def titles(t: MovieTable) -> dict[int, str]:
    return dict(zip(t.movie_ids.tolist(), t.titles, strict=True))


def test_upserts_split_into_added_and_updated_and_replace_earlier_entries() -> None:
    o = Overlay.empty().upserted(table((20, "New"), (3, "Trained, renamed"), (15, "Other new")), TRAINED)
    assert titles(o.added) == {15: "Other new", 20: "New"} and titles(o.updated) == {3: "Trained, renamed"}
    assert o.added.movie_ids.tolist() == [15, 20]  # sorted
    o2 = o.upserted(table((20, "New, fixed"), (4, "Another rename")), TRAINED)
    assert titles(o2.added) == {15: "Other new", 20: "New, fixed"}
    assert titles(o2.updated) == {3: "Trained, renamed", 4: "Another rename"}
    assert o2.movies.movie_ids.tolist() == [3, 4, 15, 20] and len(o2) == 4
    assert titles(o.added)[20] == "New"  # immutable: the earlier overlay is unchanged


def test_rebase_supersedes_added_movies_the_model_now_knows() -> None:
    o = Overlay.empty().upserted(table((20, "New"), (15, "Other new"), (3, "Renamed")), TRAINED)
    same, change = o.rebased(TRAINED)
    assert same is o and not change.changed
    retrained = np.concatenate([TRAINED, [20]])
    rebased, change = o.rebased(retrained)
    assert change.superseded.tolist() == [20] and change.orphaned.size == 0
    assert titles(rebased.added) == {15: "Other new"} and titles(rebased.updated) == {3: "Renamed"}
    # a model not trained on movie 3 any more: its update becomes an added movie (it stays in the catalog)
    rebased, change = o.rebased(np.array([1, 2, 4, 5, 20]))
    assert change.orphaned.tolist() == [3] and change.superseded.tolist() == [20]
    assert titles(rebased.added) == {3: "Renamed", 15: "Other new"} and len(rebased.updated) == 0


def test_json_round_trip(tmp_path: Path) -> None:
    o = Overlay.empty().upserted(table((20, "Néw — film"), (3, "Renamed")), TRAINED)
    f = OverlayFile(tmp_path / "added-movies.json")
    assert len(f.load()) == 0  # no file yet: empty
    f.save(o)
    data = json.loads((tmp_path / "added-movies.json").read_text(encoding="utf-8"))
    assert data["format"] == FORMAT and data["format_version"] == 1
    assert data["added"] == [{"movie_id": 20, "title": "Néw — film", "year": 2000, "genres": ["Drama"]}]
    back = f.load()
    assert titles(back.added) == titles(o.added) and titles(back.updated) == titles(o.updated)
    assert back.added.years.tolist() == [2000] and back.updated.genres == [["Drama"]]
    assert os.listdir(tmp_path) == ["added-movies.json"]  # no temp file left


def test_save_replaces_atomically_and_a_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "served.added-movies.json"
    f = OverlayFile(path)
    first = Overlay.empty().upserted(table((20, "First")), TRAINED)
    f.save(first)
    before = path.read_bytes()
    second = first.upserted(table((21, "Second")), TRAINED)
    calls: list[tuple[str, str]] = []
    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        calls.append((str(src), str(dst)))
        assert Path(src).parent == path.parent  # the temp file is in the same directory (same file system)
        assert json.loads(Path(src).read_text())["added"][-1]["movie_id"] == 21  # complete before the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        f.save(second)
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(calls) == 1 and calls[0][1] == str(path)
    assert path.read_bytes() == before  # the old file, whole
    assert sorted(os.listdir(tmp_path)) == [path.name]  # the temp file is removed
    f.save(second)
    assert OverlayFile(path).load().added.movie_ids.tolist() == [20, 21]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "added": [', "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        ("[]", "not a catalog overlay"),
        ('{"format": "something-else"}', "not a catalog overlay (format 'something-else'"),
        ('{"format": "movierec-catalog-overlay", "format_version": 99}', "format_version 99 is not supported"),
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "added": {}}', "added: expected a list"),
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "added": [{"movie_id": "7", "title": "x"}]}',
         "added[0]: expected an object with movie_id (integer)"),
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "added": [{"movie_id": 7, "title": " "}]}',
         "added[0].title: empty"),
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "updated": [{"movie_id": 7, "title": "a", "year": 3000}]}',
         "updated[0].year: 3000 is out of range"),
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "added": [{"movie_id": 7, "title": "a"}, {"movie_id": 7, "title": "b"}]}',
         "added[1].movie_id: duplicate movie id 7"),
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "added": [{"movie_id": 7, "title": "a"}], '
         '"updated": [{"movie_id": 7, "title": "b"}]}', "movie id 7 is both in 'added' and in 'updated'"),
        ('{"format": "movierec-catalog-overlay", "format_version": 1, "added": [{"movie_id": 99999999999999999999, "title": "a"}]}',
         "added"),
    ],
)
def test_a_corrupt_file_is_refused_naming_it(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = tmp_path / "added-movies.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(OverlayError) as exc:
        OverlayFile(path).load()
    message = str(exc.value)
    assert message.startswith(f"catalog overlay {path}: ") and problem in message, message
    assert "\n" not in message


def test_in_memory_overlay_writes_nothing(tmp_path: Path) -> None:
    f = OverlayFile(None)
    f.save(Overlay.empty().upserted(table((20, "x")), TRAINED))
    assert len(f.load()) == 0 and f.writable()


# -- the engine applies it -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer(tiny_artifact: Path) -> Any:
    from movierec.core.scoring import Scorer

    return Scorer.load(tiny_artifact, device="cpu")


def test_engine_applies_persists_and_reloads_the_overlay(scorer: Any, tmp_path: Path) -> None:
    from movierec.server.config import ServerSettings
    from movierec.server.engine import Engine

    path = tmp_path / "o.json"
    settings = ServerSettings(artifact=tmp_path, catalog_overlay=str(path))
    engine = Engine(scorer, settings)
    n = scorer.n_trained
    assert engine.model.scorer is scorer and engine.model.n_items == n  # nothing added: the plain scorer
    trained = int(scorer.items.raw[0])
    result = asyncio.run(engine.upsert_movies(table((10_000, "Added"), (trained, "Renamed"), (9_999, "Also added"))))
    assert (result.added, result.updated, result.model.n_items) == (2, 1, n + 2)
    m = engine.model
    assert m is result.model and m.base_scorer is scorer and m.version == scorer.info.version
    assert m.max_movie_id == 10_000 and m.max_title_bytes >= len("Also added")
    order = m.movies_by_id()
    assert m.scorer.items.raw[order].tolist() == sorted(m.scorer.items.raw.tolist())
    assert m.scorer.catalog.titles[0] == "Renamed"
    stored = json.loads(path.read_text())
    assert [x["movie_id"] for x in stored["added"]] == [9_999, 10_000] and stored["updated"][0]["movie_id"] == trained
    again = Engine(scorer, settings)  # a restart
    assert again.model.n_items == n + 2 and again.model.scorer.catalog.titles[0] == "Renamed"


def test_an_upsert_that_cannot_be_saved_changes_nothing(scorer: Any, tmp_path: Path) -> None:
    from movierec.server.config import ServerSettings
    from movierec.server.engine import Engine
    from movierec.server.errors import ErrorCode, RequestError

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    engine = Engine(scorer, ServerSettings(artifact=tmp_path, catalog_overlay=str(blocker / "o.json")))
    assert not engine.overlay_file.writable()
    before = engine.model
    with pytest.raises(RequestError) as exc:
        asyncio.run(engine.upsert_movies(table((10_000, "Added"))))
    assert exc.value.code == ErrorCode.INTERNAL and "cannot save the catalog overlay" in exc.value.message
    assert engine.model is before and len(engine.overlay) == 0
