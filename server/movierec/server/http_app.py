"""The HTTP/JSON face and the web page: Starlette on uvicorn, in the gRPC server's own process and event loop.

Every JSON endpoint (movierec.server.http_api.ENDPOINTS) parses its body, or its query parameters, into the
RPC's request message with protobuf's `json_format` and calls the gRPC servicer's own handler with it, so the
engine, the validation and the error messages are the gRPC call's: there is no second hop through gRPC and
no second copy of any rule. A servicer abort becomes the standard HTTP status of its gRPC code
(movierec.server.http_errors). The same bearer tokens (GuardInterceptor), TLS files and message size limit
apply. `/` serves the page (web/: plain HTML, JS and CSS shipped in the package), `/openapi.json` the OpenAPI
document, `/healthz` liveness and `/readyz` the gRPC health state.

With `--workers N` each worker binds the HTTP port with SO_REUSEPORT, as it does the gRPC port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import ssl
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, NoReturn

import grpc
import uvicorn
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from movierec.server.config import ServerSettings
from movierec.server.http_api import ENDPOINTS, OPENAPI_PATH, Endpoint, openapi
from movierec.server.http_errors import HttpError, invalid

log = logging.getLogger("movierec.server")

WEB_DIR = Path(__file__).resolve().with_name("web")
JSON_TYPE = "application/json"
# the page loads only its own files; nothing inline, nothing from elsewhere
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
TOKEN_MESSAGE = "missing or invalid bearer token (header 'authorization: Bearer <token>')"


class _Context:
    """What the servicer's unary handlers use of a grpc.aio.ServicerContext: an abort becomes an HttpError."""

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str = "", *_args: Any) -> NoReturn:
        raise HttpError.of(code, details)


# -- requests -> messages -------------------------------------------------------------------------------------
_FAILED = re.compile(r"Failed to parse (\w+) field: ")
_UNKNOWN = re.compile(r'Message type "([\w.]+)" has no field named "([^"]*)"(?: at "([^"]*)")?')


def parse_error_message(text: str, message: Message) -> str:
    """json_format's ParseError as one line that starts with the field (`queries.profile.age: ...`)."""
    path: list[str] = []
    rest = " ".join(text.split())
    while m := _FAILED.match(rest):
        path.append(m.group(1))
        rest = rest[m.end() :]
    if u := _UNKNOWN.search(rest):
        owner, name, at = u.group(1).rsplit(".", 1)[-1], u.group(2), (u.group(3) or "").split(".", 1)
        where = at[1] if len(at) == 2 else ".".join(path)  # "queries[0].profile" when json_format says it
        fields = rest.split("Available Fields(except extensions):", 1)[-1].strip(' ."[]').replace("'", "")
        return f"{where + '.' if where else ''}{name}: unknown field of {owner} (its fields: {fields})"
    rest = re.sub(r" at [\w.]+\.?$", "", rest).rstrip(".")
    return f"{'.'.join(path) or 'request'}: {rest}"


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f'{name} is not JSON (proto3 JSON writes it as the string "{name}")')


def parse_body(body: bytes, message: Message) -> Message:
    """A JSON object body -> `message` (an empty body is `{}`); HttpError 400 naming the field otherwise."""
    name = message.DESCRIPTOR.name
    if body.strip():
        try:
            data = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
        except UnicodeDecodeError:
            raise invalid(f"request: the body is not UTF-8 text (a {name} in JSON)") from None
        except RecursionError:
            raise invalid(f"request: the body is nested too deeply to be a {name}") from None
        except ValueError as exc:
            raise invalid(
                f"request: the body is not valid JSON ({exc}); send a {name} as a JSON object"
            ) from None
        if not isinstance(data, dict):
            raise invalid(f"request: the body must be a JSON object (a {name}), not {type(data).__name__}")
    else:
        data = {}
    return parse_dict(data, message)


def parse_dict(data: dict[str, Any], message: Message) -> Message:
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        raise invalid(parse_error_message(str(exc), message)) from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # never a 500 for input
        raise invalid(
            f"request: not a valid {message.DESCRIPTOR.name} ({type(exc).__name__}: {exc})"
        ) from None
    return message


def query_dict(request: Request, ep: Endpoint) -> dict[str, Any]:
    """GET query parameters -> the request message as a proto3 JSON dict (repeated fields: repeats or commas)."""
    fields = ep.request.DESCRIPTOR.fields_by_name
    data: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        target = ep.params.get(key)
        if target is None:
            known = ", ".join(ep.params) or "none"
            raise invalid(f"{key}: unknown query parameter of GET {ep.path} (it takes: {known})")
        f = fields[target]
        if f.is_repeated:
            data.setdefault(f.json_name, []).extend(v.strip() for v in value.split(",") if v.strip())
        elif f.json_name in data:
            raise invalid(f"{key}: given more than once")
        else:
            data[f.json_name] = value
    return data


def to_json(message: Message) -> str:
    return json_format.MessageToJson(message, indent=None, always_print_fields_with_no_presence=True)


# -- the app --------------------------------------------------------------------------------------------------
class HttpFace:
    """The Starlette app over one servicer; `start()` serves it on its own uvicorn server in the running loop."""

    def __init__(self, servicer: Any, guard: Any, health: Any, settings: ServerSettings) -> None:
        self.servicer = servicer
        self.guard = guard
        self.health = health
        self.settings = settings
        self.max_body = settings.max_message_bytes
        self.port: int | None = None
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._openapi = json.dumps(openapi(), indent=1)
        self.app = Starlette(
            routes=self.routes(),
            exception_handlers={HTTPException: self._http_exception},  # type: ignore[dict-item]
        )

    def routes(self) -> list[BaseRoute]:
        by_path: dict[str, dict[str, Endpoint]] = {}
        for ep in ENDPOINTS:
            by_path.setdefault(ep.path, {})[ep.method] = ep
        routes: list[BaseRoute] = [
            Route(path, self._endpoint(eps), methods=list(eps)) for path, eps in by_path.items()
        ]
        routes += [
            Route("/", self._page, methods=["GET"]),
            Route("/healthz", self._live, methods=["GET"]),
            Route("/readyz", self._ready, methods=["GET"]),
            Route(OPENAPI_PATH, self._openapi_doc, methods=["GET"]),
            Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
        ]
        return routes

    # -- handlers -------------------------------------------------------------------------------------------
    def _endpoint(self, eps: dict[str, Endpoint]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            ep = eps[request.method if request.method != "HEAD" else "GET"]
            try:
                if self.guard.token_count and not self.guard.authorized(request.headers.get("authorization")):
                    raise HttpError("UNAUTHENTICATED", TOKEN_MESSAGE)
                message = ep.request()
                if ep.method == "GET":
                    parse_dict(query_dict(request, ep), message)
                else:
                    parse_body(await self._body(request), message)
                answer = await getattr(self.servicer, ep.rpc)(message, _Context())
            except HttpError as err:
                return err.response()
            except Exception:
                log.exception("movierec HTTP %s %s: unexpected error", request.method, ep.path)
                return HttpError("INTERNAL", f"{ep.rpc}: internal error (logged by the server)").response()
            return Response(to_json(answer), media_type=JSON_TYPE)

        return handle

    async def _body(self, request: Request) -> bytes:
        limit = self.max_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise self._too_large(size, more=True)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, size: int, more: bool = False) -> HttpError:
        size_text = f"more than {self.max_body}" if more else str(size)
        return invalid(
            f"request: body of {size_text} bytes is over the limit of {self.max_body} bytes "
            "(ServerLimits.max_message_bytes)"
        )

    async def _page(self, request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    async def _openapi_doc(self, request: Request) -> Response:
        return Response(self._openapi, media_type=JSON_TYPE)

    async def _live(self, request: Request) -> Response:
        return JSONResponse({"status": "SERVING"})

    async def _ready(self, request: Request) -> Response:
        service = request.query_params.get("service", "")
        try:
            answer = await self.health.Check(health_pb2.HealthCheckRequest(service=service), _Context())
        except HttpError as err:
            return HttpError(err.status, err.message or f"service: unknown service {service!r}").response()
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return JSONResponse({"status": status}, status_code=200 if status == "SERVING" else 503)

    async def _http_exception(self, request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 404:
            return HttpError("NOT_FOUND", f"path: no endpoint {path}; see {OPENAPI_PATH}").response()
        if exc.status_code == 405:
            err = HttpError(
                "UNIMPLEMENTED", f"method: {request.method} {path} is not served; see {OPENAPI_PATH}"
            )
            return JSONResponse(err.body(), status_code=405, headers=exc.headers)
        return JSONResponse(HttpError("UNKNOWN", str(exc.detail)).body(), status_code=exc.status_code)

    # -- serving --------------------------------------------------------------------------------------------
    def bind(self) -> socket.socket:
        """The listening socket: SO_REUSEPORT with several workers (each binds the port the supervisor holds),
        else the port is this process's alone (a taken port is an error)."""
        s = self.settings
        return bind_socket(s.http_bind_host, s.http_port, reuse_port=s.n_workers > 1)

    async def start(self) -> int:
        s = self.settings
        sock = self.bind()
        try:
            config = uvicorn.Config(
                self.app,
                lifespan="off",
                log_config=None,  # the server's logging as it is
                access_log=False,
                server_header=False,
                proxy_headers=False,
                ssl_certfile=s.tls_cert or None,
                ssl_keyfile=s.tls_key or None,
                ssl_ca_certs=s.tls_client_ca or None,
                ssl_cert_reqs=ssl.CERT_REQUIRED if s.tls_client_ca else ssl.CERT_NONE,
                timeout_graceful_shutdown=int(s.grace_s) + 1,
            )
            config.load()  # TLS files and the app, here: errors raise now, not inside the task
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ValueError(f"--http-port: cannot set up HTTPS ({exc})") from None
        server = _Uvicorn(config)
        self._server = server
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                await self._task
                raise OSError(f"HTTP server on {s.http_bind_host}:{s.http_port} did not start")
            await asyncio.sleep(0.01)
        self.port = int(sock.getsockname()[1])
        return self.port

    async def stop(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish within `grace` seconds."""
        if self._server is None or self._task is None:
            return
        self._server.config.timeout_graceful_shutdown = max(0.01, grace)  # type: ignore[assignment]
        self._server.should_exit = True
        task, self._task, self._server = self._task, None, None
        await task


class _Uvicorn(uvicorn.Server):
    """uvicorn's server without its signal handlers: `movierec.server.app.serve` owns SIGTERM/SIGINT/SIGHUP
    and stops this server with the gRPC one."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    bind_host = host.strip("[]")
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bind_host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind HTTP {host}:{port} ({exc.strerror or exc})") from None
    return sock
