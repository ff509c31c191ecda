"""The HTTP/JSON face through a real server: every endpoint answers what the gRPC call answers for the same
request (parsed into the same message), errors carry the gRPC call's code and message under the standard
HTTP status, bad bodies are 400 naming the field, tokens, TLS, health, the OpenAPI document and the page."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc
from movierec.v1 import types_pb2 as types

TOKEN = "http-test-token-0123456789abcdef"


class Faces:
    """One server seen both ways: an HTTP client on its --http-port and a gRPC stub on its port."""

    def __init__(self, srv: Any, *, token: str | None = None) -> None:
        self.srv = srv
        self.base = f"http://127.0.0.1:{srv.server.http_port}"
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, timeout=30, headers=headers)
        self.channel = grpc.insecure_channel(srv.target)
        self.stub = pb_grpc.RecommenderServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None

    def grpc(self, rpc: str, request: Message) -> Any:
        return getattr(self.stub, rpc)(request, timeout=30, metadata=self.metadata)

    def close(self) -> None:
        self.http.close()
        self.channel.close()


@pytest.fixture(scope="module")
def faces(cold_scorer: Any) -> Iterator[Faces]:
    from conftest import ServerThread

    srv = ServerThread(cold_scorer, http_port=0, max_users_per_call=50)
    f = Faces(srv)
    yield f
    f.close()
    srv.close()


def parsed(response: httpx.Response, message: type[Message]) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return json_format.Parse(response.text, message())


def as_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def grpc_error(f: Faces, rpc: str, request: Message) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as info:
        f.grpc(rpc, request)
    return info.value.code().name, info.value.details()


def http_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "status", "message"}, body
    assert body["code"] == grpc.StatusCode[body["status"]].value[0]
    return body


def _some(cold_scorer: Any) -> tuple[list[int], list[int]]:
    return cold_scorer.users.raw[:3].tolist(), cold_scorer.items.raw[:6].tolist()


# -- every endpoint equals the gRPC answer -------------------------------------------------------------------
def test_recommend_equals_grpc(faces: Faces, cold_scorer: Any) -> None:
    users, movies = _some(cold_scorer)
    for req in (
        pb.RecommendRequest(user_ids=users, k=5),
        pb.RecommendRequest(user_ids=users[:1] * 2, k=7, include_titles=True, exclude_movie_ids=movies[:2]),
        pb.RecommendRequest(user_ids=users[1:2], k=3, include_movie_ids=movies),
    ):
        got = parsed(faces.http.post("/v1/recommend", json=as_json(req)), pb.RecommendResponse)
        assert got == faces.grpc("Recommend", req)
    # proto field names are accepted as well as lowerCamelCase (the proto3 JSON mapping)
    body = {"user_ids": [str(users[0])], "k": 4, "include_titles": True}
    got = parsed(faces.http.post("/v1/recommend", json=body), pb.RecommendResponse)
    assert got == faces.grpc("Recommend", pb.RecommendRequest(user_ids=users[:1], k=4, include_titles=True))


def test_recommend_for_ratings_with_profiles_equals_grpc(faces: Faces, cold_scorer: Any) -> None:
    _, movies = _some(cold_scorer)
    req = pb.RecommendForRatingsRequest(
        queries=[
            pb.RatingsQuery(ratings=types.RatingVector(movie_ids=movies[:3], ratings=[5, 4, 1])),
            pb.RatingsQuery(profile=types.UserProfile(age=25, gender="F", occupation="student")),
            pb.RatingsQuery(
                ratings=types.RatingVector(movie_ids=movies[:1], ratings=[5]),
                profile=types.UserProfile(age=61, gender="m", occupation="retired", zip_code="02139"),
                predict_movie_ids=movies[2:5],
            ),
            pb.RatingsQuery(),  # neither: the most popular movies
        ],
        k=10,
        include_titles=True,
        exclude_movie_ids=movies[5:6],
    )
    got = parsed(
        faces.http.post("/v1/recommend-for-ratings", json=as_json(req)), pb.RecommendForRatingsResponse
    )
    want = faces.grpc("RecommendForRatings", req)
    assert got == want
    assert len({tuple(r.recommendations.movie_ids) for r in got.results}) > 1  # the queries differ
    only_predict = pb.RecommendForRatingsRequest(
        queries=[pb.RatingsQuery(ratings=types.RatingVector(movie_ids=movies[:2], ratings=[3, 4]),
                                 predict_movie_ids=movies[2:4])], k=0)  # fmt: skip
    got = parsed(
        faces.http.post("/v1/recommend-for-ratings", json=as_json(only_predict)),
        pb.RecommendForRatingsResponse,
    )
    assert got == faces.grpc("RecommendForRatings", only_predict)


def test_model_info_movies_and_search_equal_grpc(faces: Faces, cold_scorer: Any) -> None:
    got = parsed(faces.http.get("/v1/model-info"), pb.GetModelInfoResponse)
    assert got == faces.grpc("GetModelInfo", pb.GetModelInfoRequest())
    assert got.model.side_information.profile_aware
    _, movies = _some(cold_scorer)
    want = faces.grpc("GetMovies", pb.GetMoviesRequest(movie_ids=movies[:3]))
    ids = ",".join(str(m) for m in movies[:3])
    assert parsed(faces.http.get(f"/v1/movies?movie_ids={ids}"), pb.GetMoviesResponse) == want
    assert parsed(faces.http.get(f"/v1/movies?ids={ids}"), pb.GetMoviesResponse) == want
    repeated = "&".join(f"movie_ids={m}" for m in movies[:3])
    assert parsed(faces.http.get(f"/v1/movies?{repeated}"), pb.GetMoviesResponse) == want
    assert parsed(faces.http.post("/v1/movies", json={"movieIds": movies[:3]}), pb.GetMoviesResponse) == want
    whole = parsed(faces.http.get("/v1/movies"), pb.GetMoviesResponse)
    assert whole == faces.grpc("GetMovies", pb.GetMoviesRequest())
    assert len(whole.movies) == len(cold_scorer.items)
    title = whole.movies[7].title
    for q, limit in ((title, 5), (title.upper(), 0), ("movie 1", 3), ("synthetic", 100)):
        want_s = faces.grpc("SearchMovies", pb.SearchMoviesRequest(query=q, limit=limit))
        got_s = parsed(
            faces.http.get("/v1/movies/search", params={"q": q, "limit": limit}), pb.SearchMoviesResponse
        )
        assert got_s == want_s
        body = {"query": q, "limit": limit}
        assert parsed(faces.http.post("/v1/movies:search", json=body), pb.SearchMoviesResponse) == want_s
    exact = parsed(faces.http.get("/v1/movies/search", params={"q": title.lower()}), pb.SearchMoviesResponse)
    assert exact.movies[0].title == title  # the whole title first


def test_upsert_equals_grpc_and_serves_at_once(cold_scorer: Any, make_server: Any) -> None:
    """The same upsert through HTTP on one server and through gRPC on another: same answers, then and after."""
    by_http, by_grpc = (Faces(make_server(cold_scorer, http_port=0)) for _ in range(2))
    try:
        new = pb.UpsertMoviesRequest(movies=[
            types.Movie(movie_id=90001, title="Zyxwv Brand New Picture", year=2021, genres=["Comedy", "Drama"]),
            types.Movie(movie_id=int(cold_scorer.items.raw[0]), title="Renamed Old Movie", year=1990),
        ])  # fmt: skip
        got = parsed(by_http.http.post("/v1/movies:upsert", json=as_json(new)), pb.UpsertMoviesResponse)
        assert got == by_grpc.grpc("UpsertMovies", new)
        assert (got.added, got.updated) == (1, 1)
        search = by_http.http.get("/v1/movies/search", params={"q": "zyxwv"})
        assert [m.movie_id for m in parsed(search, pb.SearchMoviesResponse).movies] == [90001]
        profile = pb.RecommendForRatingsRequest(
            queries=[pb.RatingsQuery(profile=types.UserProfile(age=30, gender="F"))],
            k=50,
            include_titles=True,
        )
        after = parsed(
            by_http.http.post("/v1/recommend-for-ratings", json=as_json(profile)),
            pb.RecommendForRatingsResponse,
        )
        assert after == by_grpc.grpc("RecommendForRatings", profile)
        both = pb.GetMoviesRequest(movie_ids=[90001, int(cold_scorer.items.raw[0])])
        assert parsed(
            by_http.http.post("/v1/movies", json=as_json(both)), pb.GetMoviesResponse
        ) == by_grpc.grpc("GetMovies", both)
    finally:
        by_http.close()
        by_grpc.close()


# -- errors: the gRPC code and message, under the standard HTTP status --------------------------------------
def test_errors_equal_grpc(faces: Faces, cold_scorer: Any) -> None:
    users, movies = _some(cold_scorer)
    cases: list[tuple[str, str, Message, int]] = [
        ("Recommend", "/v1/recommend", pb.RecommendRequest(user_ids=[10**9], k=5), 404),
        ("Recommend", "/v1/recommend", pb.RecommendRequest(user_ids=users, k=0), 400),
        ("Recommend", "/v1/recommend", pb.RecommendRequest(), 400),
        ("Recommend", "/v1/recommend", pb.RecommendRequest(user_ids=users, k=3, exclude_movie_ids=[movies[0]] * 2), 400),
        ("RecommendForRatings", "/v1/recommend-for-ratings", pb.RecommendForRatingsRequest(
            queries=[pb.RatingsQuery(ratings=types.RatingVector(movie_ids=movies[:1], ratings=[3.5]))], k=3), 400),
        ("RecommendForRatings", "/v1/recommend-for-ratings", pb.RecommendForRatingsRequest(
            queries=[pb.RatingsQuery(profile=types.UserProfile(age=300))], k=3), 400),
        ("RecommendForRatings", "/v1/recommend-for-ratings", pb.RecommendForRatingsRequest(
            queries=[pb.RatingsQuery(ratings=types.RatingVector(movie_ids=[10**9], ratings=[3]))], k=3), 400),
        ("GetMovies", "/v1/movies", pb.GetMoviesRequest(movie_ids=[10**9]), 400),
        ("SearchMovies", "/v1/movies:search", pb.SearchMoviesRequest(query="   "), 400),
        ("SearchMovies", "/v1/movies:search", pb.SearchMoviesRequest(query="a", limit=-1), 400),
        ("UpsertMovies", "/v1/movies:upsert", pb.UpsertMoviesRequest(), 400),
        ("UpsertMovies", "/v1/movies:upsert", pb.UpsertMoviesRequest(movies=[types.Movie(movie_id=5, title=" ")]), 400),
    ]  # fmt: skip
    for rpc, path, request, status in cases:
        code, details = grpc_error(faces, rpc, request)
        body = http_error(faces.http.post(path, json=as_json(request)), status)
        assert (body["status"], body["message"]) == (code, details), rpc


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"userIds": [1], "k": "ten"}', "k"),
        (b'{"userIds": [1], "k": 2.5}', "k"),
        (b'{"userIds": [1], "k": true}', "k"),
        (b'{"userIds": [1], "k": 99999999999}', "k"),
        (b'{"userIds": ["x"], "k": 3}', "userIds"),
        (b'{"userIds": {"a": 1}, "k": 3}', "userIds"),
        (b'{"userIds": [1], "k": 3, "userIdz": [2]}', "userIdz"),
        (b'{"userIds": [1], "k": 3, "includeTitles": "yes"}', "includeTitles"),
        (b'{"userIds": [1], "k": 3', "request"),
        (b'{"userIds": [1], "k": NaN}', "request"),
        (b"[1, 2]", "request"),
        (b'"text"', "request"),
        (b"\xff\xfe{}", "request"),
        (b"[" * 100_000 + b"]" * 100_000, "request"),
    ],
)
def test_malformed_bodies_are_400_naming_the_field(faces: Faces, body: bytes, field: str) -> None:
    r = faces.http.post("/v1/recommend", content=body, headers={"content-type": "application/json"})
    assert http_error(r, 400)["message"].startswith(f"{field}: "), r.text


def test_nested_fields_and_query_parameters_are_named(faces: Faces) -> None:
    bad = {"queries": [{"ratings": {"movieIds": [1], "ratings": ["many"]}}], "k": 3}
    msg = http_error(faces.http.post("/v1/recommend-for-ratings", json=bad), 400)["message"]
    assert msg.startswith("queries.ratings.ratings: "), msg
    bad = {"queries": [{"profile": {"age": 30, "favourite": "x"}}], "k": 3}
    msg = http_error(faces.http.post("/v1/recommend-for-ratings", json=bad), 400)["message"]
    assert msg.startswith("queries[0].profile.favourite: unknown field of UserProfile"), msg
    msg = http_error(faces.http.get("/v1/movies/search", params={"q": "a", "limit": "lots"}), 400)["message"]
    assert msg.startswith("limit: "), msg
    msg = http_error(faces.http.get("/v1/movies/search", params={"q": "a", "sort": "year"}), 400)["message"]
    assert msg.startswith("sort: unknown query parameter"), msg
    msg = http_error(faces.http.get("/v1/movies", params={"movie_ids": "1,x"}), 400)["message"]
    assert msg.startswith("movieIds: "), msg
    msg = http_error(faces.http.get("/v1/model-info", params={"verbose": "1"}), 400)["message"]
    assert msg.startswith("verbose: "), msg


def test_oversized_bodies_are_400(cold_scorer: Any, make_server: Any) -> None:
    f = Faces(make_server(cold_scorer, http_port=0, max_message_bytes=64 * 1024))
    try:
        users = [str(u) for u in cold_scorer.users.raw[:1]] * 20_000  # ~100 KB of JSON
        body = json.dumps({"userIds": users, "k": 3}).encode()
        msg = http_error(f.http.post("/v1/recommend", content=body), 400)["message"]
        assert (
            msg
            == f"request: body of {len(body)} bytes is over the limit of 65536 bytes (ServerLimits.max_message_bytes)"
        )

        def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        msg = http_error(f.http.post("/v1/recommend", content=chunks()), 400)["message"]
        assert msg.startswith("request: body of more than 65536 bytes is over the limit"), msg
        ok = {"userIds": users[:1], "k": 3}
        assert f.http.post("/v1/recommend", json=ok).status_code == 200  # still serving
    finally:
        f.close()


def test_unknown_paths_and_methods(faces: Faces) -> None:
    body = http_error(faces.http.get("/v1/nothing"), 404)
    assert body["message"].startswith("path: ")
    assert faces.http.delete("/v1/recommend").status_code == 405
    assert faces.http.get("/v1/recommend").status_code == 405


# -- tokens, TLS, health, OpenAPI, the page ------------------------------------------------------------------
def test_tokens(cold_scorer: Any, make_server: Any, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    srv = make_server(cold_scorer, http_port=0, auth_token_file=str(tokens))
    anonymous, wrong, right = (
        Faces(srv),
        Faces(srv, token="not-the-token-0123456789"),
        Faces(srv, token=TOKEN),
    )
    try:
        for f in (anonymous, wrong):
            for method, path, body in (
                ("POST", "/v1/recommend", {"userIds": [1], "k": 3}),
                ("GET", "/v1/model-info", None),
                ("GET", "/v1/movies/search?q=movie", None),
                ("POST", "/v1/movies:upsert", {"movies": [{"movieId": 99999, "title": "x"}]}),
            ):
                r = f.http.request(method, path, json=body)
                err = http_error(r, 401)
                assert err["status"] == "UNAUTHENTICATED" and "bearer token" in err["message"]
                assert r.headers["www-authenticate"].startswith("Bearer")
            with pytest.raises(grpc.RpcError) as info:
                f.grpc("GetModelInfo", pb.GetModelInfoRequest())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # malformed bodies without a token are refused for the token first (nothing is parsed)
        assert anonymous.http.post("/v1/recommend", content=b"{bad").status_code == 401
        got = parsed(right.http.get("/v1/model-info"), pb.GetModelInfoResponse)
        assert got == right.grpc("GetModelInfo", pb.GetModelInfoRequest())
        for open_path in ("/", "/healthz", "/readyz", "/openapi.json", "/static/app.js"):
            assert anonymous.http.get(open_path).status_code == 200, open_path
    finally:
        for f in (anonymous, wrong, right):
            f.close()


def test_tls(cold_scorer: Any, make_server: Any, tmp_path: Path) -> None:
    from test_security import _certs

    certs = _certs(tmp_path)
    srv = make_server(
        cold_scorer, http_port=0, tls_cert=str(certs["server.pem"]), tls_key=str(certs["server.key"])
    )
    url = f"https://localhost:{srv.server.http_port}"
    trusted = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with httpx.Client(base_url=url, verify=trusted, timeout=30) as https:
        got = parsed(https.get("/v1/model-info"), pb.GetModelInfoResponse)
        with grpc.secure_channel(
            f"localhost:{srv.port}", grpc.ssl_channel_credentials(certs["ca.pem"].read_bytes())
        ) as ch:
            assert got == pb_grpc.RecommenderServiceStub(ch).GetModelInfo(
                pb.GetModelInfoRequest(), timeout=30
            )
    with httpx.Client(timeout=30) as plain, pytest.raises(httpx.HTTPError):
        plain.get(f"http://localhost:{srv.server.http_port}/v1/model-info")
    with httpx.Client(timeout=30) as unverified, pytest.raises(httpx.HTTPError):
        unverified.get(f"{url}/v1/model-info")  # the server's certificate is not trusted by default


def test_health_follows_grpc_health(cold_scorer: Any, make_server: Any) -> None:
    srv = make_server(cold_scorer, http_port=0)
    f = Faces(srv)
    try:
        assert f.http.get("/healthz").json() == {"status": "SERVING"}
        assert f.http.get("/readyz").json() == {"status": "SERVING"}
        service = "movierec.v1.RecommenderService"
        assert f.http.get("/readyz", params={"service": service}).status_code == 200
        assert http_error(f.http.get("/readyz", params={"service": "nope"}), 404)["message"].startswith(
            "service: "
        )
        srv.run(srv.server.health.enter_graceful_shutdown()).result(30)  # what SIGTERM does first
        r = f.http.get("/readyz")
        assert (r.status_code, r.json()) == (503, {"status": "NOT_SERVING"})
        assert f.http.get("/healthz").status_code == 200  # alive while draining
    finally:
        f.close()


def test_openapi_document_describes_every_endpoint(faces: Faces) -> None:
    from movierec.server.http_api import ENDPOINTS

    doc = faces.http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for ep in ENDPOINTS:
        op = doc["paths"][ep.path][ep.method.lower()]
        assert "200" in op["responses"] and "400" in op["responses"]
        for message in (ep.request, ep.response):
            schema = doc["components"]["schemas"][message.DESCRIPTOR.name]
            assert set(schema["properties"]) == {f.json_name for f in message.DESCRIPTOR.fields}
    assert "/healthz" in doc["paths"] and "/readyz" in doc["paths"]
    refs = {m for m in json.dumps(doc).split('"#/components/schemas/')[1:]}
    assert {r.split('"')[0] for r in refs} <= set(doc["components"]["schemas"])


def test_the_page_and_its_files_are_served(faces: Faces) -> None:
    page = faces.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        assert f"/static/{name}" in page.text
        r = faces.http.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], name
    assert faces.http.get("/static/../http_app.py").status_code == 404


def test_answers_are_canonical_proto3_json(faces: Faces, cold_scorer: Any) -> None:
    users, _ = _some(cold_scorer)
    body = faces.http.post("/v1/recommend", json={"userIds": users[:1], "k": 3}).json()
    lst = body["recommendations"][0]
    assert set(body) == {"modelVersion", "recommendations"}
    assert lst["userId"] == str(users[0]) and all(
        isinstance(m, str) for m in lst["movieIds"]
    )  # int64: strings
    assert np.all(np.diff(np.array(lst["scores"], dtype=float)) <= 0)


def test_plain_http_off_loopback_is_refused() -> None:
    from movierec.server.config import ServerSettings

    with pytest.raises(ValueError, match="plain-text HTTP on non-loopback"):
        ServerSettings(http_port=0, http_host="0.0.0.0")
    ServerSettings(http_port=0, http_host="0.0.0.0", insecure=True)
    with pytest.raises(ValueError, match="http_port"):
        ServerSettings(http_port=70000)


def test_a_taken_http_port_is_an_error(cold_scorer: Any, make_server: Any, server_thread: Any) -> None:
    srv = make_server(cold_scorer, http_port=0)
    with pytest.raises(OSError, match="cannot bind HTTP"):
        server_thread(cold_scorer, http_port=srv.server.http_port)
