"""OpenTelemetry tracing, on only when the standard OTEL_* environment asks for it.

On: `OTEL_TRACES_EXPORTER` names an exporter (console, otlp, ... : any `opentelemetry_traces_exporter`
entry point installed; otlp needs `pip install opentelemetry-exporter-otlp`), or `OTEL_EXPORTER_OTLP_ENDPOINT`
/ `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (exporter otlp). Off: neither, `OTEL_TRACES_EXPORTER=none`, or
`OTEL_SDK_DISABLED=true`; then no interceptor is installed and the batcher captures nothing, so tracing
costs nothing. The SDK reads the rest itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
exporter settings).

Spans: one server span per call (opentelemetry-instrumentation-grpc's grpc.aio server interceptor, which also
continues a caller's trace from the `traceparent` metadata), and one `movierec.model_step` span per model step
(in the model thread) with a link to the span of every call it served: a step serves many calls, so it
cannot be the child of one of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

STEP_SPAN = "movierec.model_step"


def enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is not None:
        return any(n.strip() not in ("", "none") for n in names.split(","))
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def provider_from_env(env: Mapping[str, str] | None = None) -> Any | None:
    """A TracerProvider exporting as OTEL_* says, or None when tracing is off. ValueError naming an exporter
    that is not installed. Call it in the process that serves (a worker), after any fork: the batch span
    processor starts a thread."""
    env = os.environ if env is None else env
    if not enabled(env):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.util._importlib_metadata import entry_points

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "movierec"}
    provider = TracerProvider(resource=Resource.create(attributes))
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip() not in ("", "none")]
    for name in names:
        found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
        if not found:
            hint = " (pip install opentelemetry-exporter-otlp)" if name.startswith("otlp") else ""
            raise ValueError(f"OTEL_TRACES_EXPORTER={name}: no such span exporter installed{hint}")
        provider.add_span_processor(BatchSpanProcessor(found[0].load()()))
    return provider


class StepTracing:
    """The batcher's `StepTracer`: the caller's span context per job, a linked span per model step."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("movierec.server")

    def interceptor(self) -> Any:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        return aio_server_interceptor(tracer_provider=self.provider)

    def context(self) -> Any:
        ctx = trace.get_current_span().get_span_context()
        return ctx if ctx.is_valid else None

    def run(self, n_rows: int, contexts: list[Any], fn: Callable[[], Any]) -> Any:
        links = [trace.Link(c) for c in contexts if c is not None]
        attributes = {"movierec.batch.requests": len(contexts), "movierec.batch.users": n_rows}
        with self.tracer.start_as_current_span(STEP_SPAN, links=links, attributes=attributes):
            return fn()
