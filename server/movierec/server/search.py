"""Title search over the served catalog (SearchMovies over gRPC, GET /v1/movies/search over HTTP).

Case- and accent-insensitive; every word of the query must occur in the title. Vectorized over the whole
catalog (numpy string operations on the folded titles, built once per served model and cached), so movies
added with UpsertMovies are searched as soon as they serve: an upsert makes a new LoadedModel, hence a new index.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from movierec.server.engine import LoadedModel
from movierec.server.errors import invalid

MAX_QUERY_CHARS = 200
DEFAULT_LIMIT = 20
_NOT_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Lower case, accents dropped, every run of non-word characters one space, trimmed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", plain).strip()


@dataclass(frozen=True)
class TitleIndex:
    folded: npt.NDArray[np.str_]  # per dense movie index: the folded title
    spaced: npt.NDArray[np.str_]  # " " + folded: a word starts where " " + word is found
    popularity: npt.NDArray[np.int64]  # training ratings per movie (0 for movies added while serving)
    raw_ids: npt.NDArray[np.int64]

    @classmethod
    def of(cls, model: LoadedModel) -> TitleIndex:
        scorer = model.scorer
        folded = np.array([fold(str(t)) for t in model.titles.tolist()], dtype=str)
        if folded.size == 0:
            folded = np.zeros(0, dtype="<U1")
        history = scorer.history
        counts = np.bincount(np.asarray(history.indices, dtype=np.int64), minlength=model.n_items)
        return cls(
            folded=folded,
            spaced=np.char.add(" ", folded),
            popularity=counts[: model.n_items].astype(np.int64),
            raw_ids=np.asarray(scorer.items.raw, dtype=np.int64),
        )


_INDEXES: weakref.WeakKeyDictionary[LoadedModel, TitleIndex] = weakref.WeakKeyDictionary()


def title_index(model: LoadedModel) -> TitleIndex:
    index = _INDEXES.get(model)
    if index is None:
        index = _INDEXES[model] = TitleIndex.of(model)
    return index


def search_titles(
    model: LoadedModel, query: str, limit: int, max_limit: int
) -> tuple[npt.NDArray[np.int64], int]:
    """Dense indices of the best `limit` (0 = DEFAULT_LIMIT) matches of `query`, and how many matched.

    Order: the whole title equals the query, then titles starting with it, then titles holding it as whole
    words, then titles with a word starting with it, then the rest; within each, most training ratings first,
    then ascending movie id."""
    if len(query) > MAX_QUERY_CHARS:
        raise invalid(f"query: {len(query)} characters; at most {MAX_QUERY_CHARS}")
    q = fold(query)
    if not q:
        raise invalid("query: empty; give a word of a title (1..200 characters)")
    if limit < 0 or limit > max_limit:
        raise invalid(f"limit: {limit} is outside 0..{max_limit} (0 = {DEFAULT_LIMIT}; the server's --max-k)")
    limit = limit or min(DEFAULT_LIMIT, max_limit)
    index = title_index(model)
    mask = np.ones(index.folded.size, dtype=bool)
    for word in q.split():
        mask &= np.char.find(index.folded, word) >= 0
    found = np.flatnonzero(mask)
    if found.size == 0:
        return found.astype(np.int64), 0
    titles = index.folded[found]
    spaced = np.char.add(index.spaced[found], " ")
    tier = np.full(found.size, 4, dtype=np.int64)
    tier[np.char.find(spaced, " " + q) >= 0] = 3
    tier[np.char.find(spaced, f" {q} ") >= 0] = 2
    tier[np.char.startswith(titles, q)] = 1
    tier[titles == q] = 0
    order = np.lexsort((index.raw_ids[found], -index.popularity[found], tier))
    return found[order][:limit].astype(np.int64), int(found.size)
