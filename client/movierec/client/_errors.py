"""The SDK's one error type: every failed call raises MovieRecError, never a raw grpc.RpcError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc


class MovieRecError(Exception):
    """A failed movierec call: `code` is the gRPC status code, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> MovieRecError:
        # a finished call's error (blocking: a grpc.Call; asyncio: AioRpcError) carries its status; a bare
        # RpcError (raised by other code) does not
        if isinstance(err, (grpc.Call, grpc.aio.AioRpcError)):
            return cls(err.code() or grpc.StatusCode.UNKNOWN, err.details() or "")
        return cls(grpc.StatusCode.UNKNOWN, str(err))

    @classmethod
    def from_code_number(cls, number: int, details: str) -> MovieRecError:
        code = next((c for c in grpc.StatusCode if c.value[0] == number), grpc.StatusCode.UNKNOWN)
        return cls(code, details)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as err:
        raise MovieRecError.from_rpc_error(err) from None
