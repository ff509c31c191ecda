"""Errors the serving core raises; the servicer maps them to gRPC status codes (no grpc import here)."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """The subset of gRPC status codes the core uses; names equal `grpc.StatusCode` member names."""

    INVALID_ARGUMENT = 3
    FAILED_PRECONDITION = 9
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    RESOURCE_EXHAUSTED = 8
    CANCELLED = 1
    UNAVAILABLE = 14
    INTERNAL = 13


class RequestError(Exception):
    """A request that cannot be served; `message` names the field and the allowed range."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"RequestError({self.code.name}, {self.message!r})"


def invalid(message: str) -> RequestError:
    return RequestError(ErrorCode.INVALID_ARGUMENT, message)
