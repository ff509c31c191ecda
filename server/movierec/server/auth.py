"""The server's front door: one grpc.aio interceptor in front of every RPC.

- Authentication: when tokens are configured (`--auth-token-file`, one token per line), every call except
  the health service must carry `authorization: Bearer <token>` metadata; anything else gets
  UNAUTHENTICATED. Tokens are compared in constant time (`hmac.compare_digest` against every configured
  token, no early exit) and are never logged.
- Malformed messages: bytes that do not parse as the method's request message are answered with
  INVALID_ARGUMENT ("request: not a valid ... message") instead of gRPC's generic INTERNAL.
- Concurrent streams: at most `max_streams` response-streaming calls of the movierec services run at once,
  server-wide; one more gets RESOURCE_EXHAUSTED at once.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # reachable without a token (orchestrators' probes)
GUARDED_PREFIX = "/movierec."


def read_tokens(path: str | Path) -> list[bytes]:
    """Tokens from a file, one per line; blank lines and lines starting with # are ignored."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"auth token file {p}: cannot read ({exc.strerror})") from None
    tokens = [t.strip().encode() for t in text.splitlines() if t.strip() and not t.strip().startswith("#")]
    if not tokens:
        raise ValueError(f"auth token file {p}: no tokens in it")
    if any(len(t) < 16 for t in tokens):
        raise ValueError(f"auth token file {p}: every token must be at least 16 characters")
    return tokens


class _Bad:
    """Sentinel for a request that did not parse."""

    def __init__(self, size: int, exc: Exception) -> None:
        self.size = size
        self.exc = exc


def _safe_deserializer(des: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if des is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return des(data)
        except (DecodeError, ValueError, TypeError, RuntimeError) as exc:
            return _Bad(len(data), exc)

    return parse


def _bad_message(method: str, bad: _Bad) -> str:
    name = method.rsplit("/", 1)[-1]
    return f"request: {bad.size} bytes that are not a valid {name} request message"


class GuardInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: Sequence[bytes] = (), max_streams: int = 64) -> None:
        self._tokens = list(tokens)
        self.max_streams = max_streams
        self.active_streams = 0
        self.denied = 0  # UNAUTHENTICATED answers
        self.malformed = 0  # requests that did not parse
        self.streams_refused = 0
        # Wrapped handlers per method: the servicer's handlers are fixed, so wrap each once, not per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    @property
    def token_count(self) -> int:
        return len(self._tokens)

    # -- authentication -----------------------------------------------------------------------------------
    def authorized(self, authorization: str | None) -> bool:
        """The same check for another transport (the HTTP face): the `authorization` header's value; counts a
        refusal in `denied`."""
        ok = self._authorized([("authorization", authorization)] if authorization is not None else [])
        if not ok:
            self.denied += 1
        return ok

    def _authorized(self, metadata: Any) -> bool:
        if not self._tokens:
            return True
        value = None
        for key, val in metadata or ():
            if key == "authorization":
                value = val
                break
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str) or value[:7].lower() != "bearer ":
            presented = b""
        else:
            presented = value[7:].strip().encode("utf-8", "replace")
        ok = False
        for t in self._tokens:  # every token is compared: the time does not depend on which one matched
            ok |= hmac.compare_digest(presented, t)
        return ok and bool(presented)

    # -- interception ---------------------------------------------------------------------------------------
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method or ""
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if not self._authorized(details.invocation_metadata):
            self.denied += 1
            return _refuse(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or invalid bearer token (metadata 'authorization: Bearer <token>')",
            )
        if not method.startswith(GUARDED_PREFIX):
            return handler
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, self._wrap(handler, method))
        return cached[1]

    def _wrap(self, h: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        guard = self
        des = _safe_deserializer(h.request_deserializer)
        ser = h.response_serializer
        if not h.request_streaming and not h.response_streaming:
            inner_uu = h.unary_unary

            async def uu(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, _Bad):
                    guard.malformed += 1
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _bad_message(method, request))
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(uu, des, ser)

        if h.request_streaming and not h.response_streaming:
            return h  # no such movierec RPC; left as it is

        async def checked(requests: Any, context: grpc.aio.ServicerContext, bad: list[_Bad]) -> AsyncIterator[Any]:
            async for r in requests:
                if isinstance(r, _Bad):
                    guard.malformed += 1
                    bad.append(r)
                    return  # end of input; the call fails with INVALID_ARGUMENT once answers are out
                yield r

        if not h.request_streaming:  # unary request, streamed response
            inner_us = h.unary_stream

            async def us(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, _Bad):
                    guard.malformed += 1
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _bad_message(method, request))
                async with guard._stream_slot(context):
                    async for resp in inner_us(request, context):
                        yield resp

            return grpc.unary_stream_rpc_method_handler(us, des, ser)

        inner_ss = h.stream_stream

        async def ss(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            bad: list[_Bad] = []
            async with guard._stream_slot(context):
                async for resp in inner_ss(checked(requests, context, bad), context):
                    yield resp
            if bad:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _bad_message(method, bad[0]))

        return grpc.stream_stream_rpc_method_handler(ss, des, ser)

    def _stream_slot(self, context: grpc.aio.ServicerContext) -> _StreamSlot:
        return _StreamSlot(self, context)


class _StreamSlot:
    def __init__(self, guard: GuardInterceptor, context: grpc.aio.ServicerContext) -> None:
        self.guard = guard
        self.context = context

    async def __aenter__(self) -> None:
        g = self.guard
        if g.active_streams >= g.max_streams:
            g.streams_refused += 1
            await self.context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"streams: {g.active_streams} streaming calls open; the limit is {g.max_streams} "
                "(max_concurrent_streams); retry later",
            )
        g.active_streams += 1

    async def __aexit__(self, *exc: object) -> None:
        self.guard.active_streams -= 1


def _refuse(h: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `h` that answers `code` without parsing or running anything."""

    def ignore(_data: bytes) -> None:
        return None

    async def unary(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def streaming(_request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(code, message)
        yield None  # pragma: no cover - abort raises

    ser = h.response_serializer
    if h.request_streaming and h.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, ignore, ser)
    if h.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, ignore, ser)
    if h.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, ignore, ser)
    return grpc.unary_unary_rpc_method_handler(unary, ignore, ser)
