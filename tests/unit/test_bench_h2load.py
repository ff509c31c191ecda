"""bench.bench_h2load: the gRPC body it sends and how it reads h2load's summary (no h2load needed)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `bench` is not installed

from bench.bench_h2load import grpc_body, parse  # noqa: E402
from movierec.v1 import recommender_service_pb2 as pb  # noqa: E402

OUTPUT = """starting benchmark...
Application protocol: h2c
finished in 5.00s, 6701.20 req/s, 897.50KB/s
requests: 33506 total, 33570 started, 33506 done, 33506 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 33506 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 4.38MB (4595176) total, 98.75KB (101118) headers (space savings 96.27%), 2.52MB (2646974) data
                     min         max         mean         sd        +/- sd
time for request:      164us     36.98ms      9.54ms      3.16ms    85.28%
"""


def test_grpc_body_is_one_uncompressed_length_prefixed_message() -> None:
    body = grpc_body(215, k=7)
    assert body[0] == 0  # not compressed
    (length,) = struct.unpack(">I", body[1:5])
    assert length == len(body) - 5
    req = pb.RecommendRequest.FromString(body[5:])
    assert list(req.user_ids) == [215] and req.k == 7


def test_parse_reads_rate_answers_bytes_and_latency() -> None:
    out = parse(OUTPUT)
    assert out["calls_per_s"] == pytest.approx(6701.20)
    assert out["succeeded"] == 33506 and out["failed"] == 0
    assert out["data_bytes_per_answer"] == pytest.approx(2646974 / 33506)
    assert out["mean_ms"] == pytest.approx(9.54)


def test_parse_counts_failed_and_errored_calls_and_refuses_other_text() -> None:
    out = parse(OUTPUT.replace("33506 succeeded, 0 failed, 0 errored", "33000 succeeded, 400 failed, 106 errored"))
    assert out["failed"] == 506 and out["succeeded"] == 33000
    with pytest.raises(ValueError, match="cannot read h2load's output"):
        parse("connect: Connection refused\n")
