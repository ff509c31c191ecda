"""Hostile input, generated, for the HTTP/JSON face: arbitrary bytes, arbitrary JSON, near-valid requests and
query strings on every endpoint of one live server.

Every answer is 200 or a documented 4xx with a JSON error body whose message starts with the field it is
about (or `request`, for the body as a whole); never a 5xx; the server answers a good request afterwards.
`MOVIEREC_FUZZ_SCALE` (default 1) multiplies the number of examples, as for the gRPC fuzz tests.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf.descriptor import Descriptor
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from movierec.server.http_api import ENDPOINTS

SCALE = float(os.environ.get("MOVIEREC_FUZZ_SCALE", "1"))
STATUSES: Counter[int] = Counter()
POSTS = sorted({ep.path for ep in ENDPOINTS if ep.method == "POST"})
HEAD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)")


def _names(d: Descriptor, out: set[str]) -> set[str]:
    for f in d.fields:
        out |= {f.name, f.json_name}
        if f.message_type is not None and f.message_type.name not in out:
            out.add(f.message_type.name)
            _names(f.message_type, out)
    return out


FIELDS = {ep.path: _names(ep.request.DESCRIPTOR, {"request"}) | set(ep.params) for ep in ENDPOINTS}


def fuzz_settings(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=SCALE == 1,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )


@pytest.fixture(scope="module")
def http(cold_scorer: Any) -> Iterator[httpx.Client]:
    from conftest import ServerThread

    srv = ServerThread(cold_scorer, http_port=0, max_message_bytes=256 * 1024)
    with httpx.Client(base_url=f"http://127.0.0.1:{srv.server.http_port}", timeout=60) as c:
        yield c
    srv.close()
    print(f"\nHTTP fuzz statuses: {dict(sorted(STATUSES.items()))}")


def check(r: httpx.Response, path: str, sent: Any = None) -> None:
    STATUSES[r.status_code] += 1
    assert r.status_code < 500, (path, r.status_code, r.text, sent)
    body = r.json()
    if r.status_code == 200:
        return
    assert r.status_code in (400, 404), (path, r.status_code, r.text, sent)
    assert set(body) == {"code", "status", "message"}, body
    if r.status_code == 404:
        assert path == "/v1/recommend" and body["status"] == "NOT_FOUND", body
    msg = body["message"]
    if "unknown field of" in msg or "unknown query parameter" in msg:
        return  # names the key the caller sent, whatever it is
    m = HEAD.match(msg)
    assert m and m.group(1) in FIELDS[path], (path, msg, sent)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
ids = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.integers(0, 100), st.sampled_from(["1", "2", "x", "", "1e3", "-0", " 7"])
)
plausible = st.one_of(
    ids,
    st.lists(ids, max_size=6),
    st.floats(),
    st.sampled_from(["NaN", "Infinity", True, None, [], {}]),
    json_values,
)


def near_valid(path: str) -> Any:
    """Dicts with the request's own field names (both spellings), nested messages included, odd values."""
    ep = next(e for e in ENDPOINTS if e.path == path and e.method == "POST")

    def message(d: Descriptor, depth: int) -> Any:
        fields = {}
        for f in d.fields:
            if f.message_type is not None and depth < 3 and not f.message_type.GetOptions().map_entry:
                sub = message(f.message_type, depth + 1)
                fields[f.json_name] = st.lists(sub, max_size=3) if f.is_repeated else sub
            else:
                fields[f.json_name] = plausible
        return st.fixed_dictionaries({}, optional=fields)

    return message(ep.request.DESCRIPTOR, 0)


def mostly_valid(path: str) -> Any:
    """Requests the server should mostly serve (ids of the test data: 120 users, 80 movies, 1..5 stars)."""
    pairs = st.lists(st.tuples(st.integers(1, 85), st.integers(0, 6)), max_size=6, unique_by=lambda t: t[0])
    query = st.fixed_dictionaries(
        {"ratings": pairs.map(lambda ps: {"movieIds": [m for m, _ in ps], "ratings": [r for _, r in ps]})},
        optional={
            "profile": st.fixed_dictionaries(
                {}, optional={"age": st.integers(-1, 130), "gender": st.sampled_from(["F", "m", "X", ""]),
                              "occupation": st.sampled_from(["student", "engineer", "", "ninja"])},
            ),
            "predictMovieIds": st.lists(st.integers(1, 85), max_size=3),
        },
    )  # fmt: skip
    movie = st.fixed_dictionaries({"movieId": st.integers(1, 90), "title": st.text(max_size=12)},
                                  optional={"year": st.integers(1860, 2110), "genres": st.lists(st.text(max_size=8), max_size=3)})  # fmt: skip
    k = st.integers(0, 90)
    return {
        "/v1/recommend": st.fixed_dictionaries({"userIds": st.lists(st.integers(0, 125), min_size=1, max_size=4), "k": k},
                                               optional={"includeTitles": st.booleans(), "excludeMovieIds": st.lists(st.integers(1, 85), max_size=3)}),
        "/v1/recommend-for-ratings": st.fixed_dictionaries({"queries": st.lists(query, min_size=1, max_size=3), "k": k},
                                                           optional={"includeTitles": st.booleans()}),
        "/v1/movies": st.fixed_dictionaries({"movieIds": st.lists(st.integers(0, 90), max_size=5)}),
        "/v1/movies:search": st.fixed_dictionaries({"query": st.text(max_size=15)}, optional={"limit": st.integers(-1, 1001)}),
        "/v1/movies:upsert": st.fixed_dictionaries({"movies": st.lists(movie, max_size=3)}),
    }[path]  # fmt: skip


@fuzz_settings(120)
@given(path=st.sampled_from(POSTS), data=st.data())
@example(path="/v1/recommend", data=None)
def test_near_valid_bodies(http: httpx.Client, path: str, data: Any) -> None:
    if data is None:
        body: Any = {"userIds": [1], "k": 3}
    else:
        body = data.draw(st.one_of(near_valid(path), mostly_valid(path)))
    check(http.post(path, content=json.dumps(body).encode()), path, body)  # bare Infinity / NaN too


@fuzz_settings(100)
@given(path=st.sampled_from(POSTS), body=json_values)
def test_arbitrary_json(http: httpx.Client, path: str, body: Any) -> None:
    check(http.post(path, content=json.dumps(body).encode()), path, body)


@fuzz_settings(60)
@given(path=st.sampled_from(POSTS), raw=st.binary(max_size=200))
def test_arbitrary_bytes(http: httpx.Client, path: str, raw: bytes) -> None:
    check(http.post(path, content=raw), path, raw)


@fuzz_settings(80)
@given(
    path=st.sampled_from(["/v1/movies", "/v1/movies/search", "/v1/model-info"]),
    params=st.lists(
        st.tuples(
            st.sampled_from(["q", "query", "limit", "movie_ids", "ids", "movieIds", "x"]) | st.text(max_size=5),
            st.text(max_size=30) | ids.map(str),
        ),
        max_size=4,
    ),
)
def test_query_strings(http: httpx.Client, path: str, params: list[tuple[str, str]]) -> None:
    check(http.get(path, params=params), path, params)


def test_still_serving_after_the_fuzz(http: httpx.Client) -> None:
    r = http.post("/v1/recommend-for-ratings", json={"queries": [{}], "k": 5})
    assert r.status_code == 200 and len(r.json()["results"][0]["recommendations"]["movieIds"]) == 5
    assert http.get("/readyz").json() == {"status": "SERVING"}
