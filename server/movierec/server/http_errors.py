"""gRPC status codes -> HTTP statuses for the JSON face, and the JSON error body.

The mapping is the standard one (google.rpc.Code's documented HTTP mapping, as grpc-gateway applies it).
An error body is `{"code": <gRPC code number>, "status": "<gRPC code name>", "message": "<the same message
the gRPC call would carry>"}`.
"""

from __future__ import annotations

import json

import grpc
from starlette.responses import Response

HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,  # "client closed request"
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class HttpError(Exception):
    """A request answered with a gRPC status (by name) and a message naming the offending field."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        if status not in HTTP_STATUS:
            raise ValueError(f"not a gRPC status code name: {status}")
        self.status = status
        self.message = message

    @classmethod
    def of(cls, code: grpc.StatusCode, message: str) -> HttpError:
        return cls(code.name, message)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.status]

    def body(self) -> dict[str, object]:
        return {"code": grpc.StatusCode[self.status].value[0], "status": self.status, "message": self.message}

    def response(self) -> Response:
        headers = (
            {"www-authenticate": 'Bearer realm="movierec"'} if self.status == "UNAUTHENTICATED" else None
        )
        return Response(
            json.dumps(self.body(), ensure_ascii=False),
            status_code=self.http_status,
            media_type="application/json",
            headers=headers,
        )


def invalid(message: str) -> HttpError:
    return HttpError("INVALID_ARGUMENT", message)
