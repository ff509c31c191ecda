"""`movierec serve --workers 2 --http-port 0` as real processes: both workers listen on the one HTTP port
(SO_REUSEPORT), answers over fresh connections equal the gRPC answers, tokens hold in each, a movie upserted
over HTTP reaches every worker (the overlay file), and SIGTERM stops them all."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import json_format
from serve_process import ServeProcess
from waiting import wait_for

from movierec.v1 import recommender_service_pb2 as pb
from movierec.v1 import recommender_service_pb2_grpc as pb_grpc

TOKEN = "http-workers-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class Served(ServeProcess):
    """`movierec serve --workers 2 --http-port 0` with tokens."""

    def __init__(self, artifact: Path, tmp: Path) -> None:
        tokens = tmp / "tokens.txt"
        tokens.write_text(TOKEN + "\n")
        http = r"web page on http://\S+:(\d+)/ \(every worker\)"
        super().__init__(
            ["--artifact", str(artifact), "--port", "0", "--http-port", "0", "--device", "cpu", "--workers", "2",
             "--auth-token-file", str(tokens), "--grace-s", "5"],
            http, "the supervisor says every worker serves HTTP",
        )  # fmt: skip
        self.port = int(self.find(r"all 2 workers serving on \S+:(\d+)") or 0)
        self.http_port = int(self.find(http) or 0)

    def http_listeners(self) -> list[int]:
        return [p.pid for p in self.listeners(self.http_port)]


@pytest.fixture()
def served(tiny_artifact: Path, tmp_path: Path) -> Iterator[Served]:
    artifact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artifact)
    s = Served(artifact, tmp_path)
    try:
        yield s
    finally:
        s.kill()


def fresh_get(s: Served, path: str, **kw: object) -> httpx.Response:
    """One request on a new connection (the kernel spreads connections over the workers)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{s.http_port}", timeout=30, headers=AUTH) as c:
        return c.get(path, **kw)  # type: ignore[arg-type]


def test_two_workers_serve_http(served: Served, tiny_artifact: Path) -> None:
    wait_for(lambda: len(served.http_listeners()) == 2, "both workers listening on the HTTP port")
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
        stub = pb_grpc.RecommenderServiceStub(ch)
        meta = tuple(AUTH.items())
        want_info = stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=meta, timeout=30)
        want_recs = stub.Recommend(pb.RecommendRequest(user_ids=[1, 2], k=5), metadata=meta, timeout=30)
    for _ in range(8):
        assert json_format.Parse(fresh_get(served, "/v1/model-info").text, pb.GetModelInfoResponse()) == want_info
        with httpx.Client(base_url=f"http://127.0.0.1:{served.http_port}", timeout=30) as anonymous:
            assert anonymous.get("/v1/model-info").status_code == 401
            assert anonymous.get("/readyz").json() == {"status": "SERVING"}
        with httpx.Client(base_url=f"http://127.0.0.1:{served.http_port}", timeout=30, headers=AUTH) as c:
            r = c.post("/v1/recommend", json={"userIds": [1, 2], "k": 5})
        assert json_format.Parse(r.text, pb.RecommendResponse()) == want_recs
    movie = {"movieId": 77777, "title": "Qwxyz Worker Shared Film", "year": 2020, "genres": ["Drama"]}
    with httpx.Client(base_url=f"http://127.0.0.1:{served.http_port}", timeout=30, headers=AUTH) as c:
        assert c.post("/v1/movies:upsert", json={"movies": [movie]}).json()["added"] == 1

    def everyone_finds_it() -> bool:  # 6 fresh connections in a row: both workers, whichever took the upsert
        return all(
            [m["movieId"] for m in fresh_get(served, "/v1/movies/search", params={"q": "qwxyz"}).json()["movies"]]
            == ["77777"]
            for _ in range(6)
        )

    wait_for(everyone_finds_it, "the upserted movie found through every worker")
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(60) == 0
    with pytest.raises(httpx.HTTPError):
        fresh_get(served, "/healthz")
