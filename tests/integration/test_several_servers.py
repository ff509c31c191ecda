"""Several servers behind one SDK: gRPC's round_robin spreads calls, and calls fail over when one stops."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.client import Client
from movierec.client._options import resolve_target


def test_resolve_target_forms() -> None:
    assert resolve_target("localhost:50051") == "localhost:50051"
    assert resolve_target(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert resolve_target("127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert resolve_target("dns:///movierec.internal:50051") == "dns:///movierec.internal:50051"
    with pytest.raises(ValueError, match="host:port"):
        resolve_target(["127.0.0.1", "127.0.0.1:2"])


def test_calls_are_spread_and_fail_over(make_server, scorer) -> None:
    a, b = make_server(), make_server()
    with Client([a.target, b.target], timeout=10) as client:
        client.wait_until_serving()
        expected = client.recommend([1], k=5)[0].movie_ids
        for _ in range(40):
            client.recommend([1], k=5)
        served = [s.stats.requests_served for s in (a, b)]
        assert min(served) >= 10, f"round_robin should use both servers: {served}"
        a.stop(0).result(30)  # one server goes away mid-run
        for _ in range(30):  # every call still succeeds, on the other server
            np.testing.assert_array_equal(client.recommend([1], k=5)[0].movie_ids, expected)
    assert b.stats.requests_served >= served[1] + 30
