"""Reading a server's Prometheus `/metrics` page in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def scrape(url: str) -> dict[tuple[str, Labels], float]:
    """Every sample of the page: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def handled(samples: dict[tuple[str, Labels], float], method: str) -> dict[str, float]:
    """grpc_server_handled_total of one method, by grpc_code."""
    out: dict[str, float] = {}
    for (name, labels), value in samples.items():
        d = dict(labels)
        if name == "grpc_server_handled_total" and d.get("grpc_method") == method:
            out[d["grpc_code"]] = out.get(d["grpc_code"], 0.0) + value
    return out


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())
