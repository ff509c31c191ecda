"""The HTTP/JSON endpoints (one table), and the OpenAPI 3 document derived from it and the .proto messages.

Each endpoint is one RPC of movierec.v1.RecommenderService: its body (or its query parameters, for GET) is the
RPC's request message in the canonical proto3 JSON mapping, its answer the RPC's response message. The
schemas in the OpenAPI document are generated from the message descriptors, so the .proto stays the one
contract; only the paths, summaries and query parameters are written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from movierec.v1 import recommender_service_pb2 as pb


@dataclass(frozen=True)
class Endpoint:
    method: str  # GET | POST
    path: str
    rpc: str  # the RecommenderService method answering it
    summary: str
    # GET only: query parameter -> request field (proto name); repeated fields take repeats or commas
    params: dict[str, str] = field(default_factory=dict)

    @property
    def request(self) -> type[Message]:
        return _MESSAGES[self.rpc][0]

    @property
    def response(self) -> type[Message]:
        return _MESSAGES[self.rpc][1]


_MESSAGES: dict[str, tuple[type[Message], type[Message]]] = {
    "Recommend": (pb.RecommendRequest, pb.RecommendResponse),
    "RecommendForRatings": (pb.RecommendForRatingsRequest, pb.RecommendForRatingsResponse),
    "GetModelInfo": (pb.GetModelInfoRequest, pb.GetModelInfoResponse),
    "GetMovies": (pb.GetMoviesRequest, pb.GetMoviesResponse),
    "SearchMovies": (pb.SearchMoviesRequest, pb.SearchMoviesResponse),
    "UpsertMovies": (pb.UpsertMoviesRequest, pb.UpsertMoviesResponse),
}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/v1/recommend", "Recommend", "Top-K movies for known users (RPC Recommend)"),
    Endpoint(
        "POST",
        "/v1/recommend-for-ratings",
        "RecommendForRatings",
        "Top-K movies and/or predicted ratings for rating vectors, optionally with a profile (RPC "
        "RecommendForRatings)",
    ),
    Endpoint("GET", "/v1/model-info", "GetModelInfo", "The model being served and the server's limits"),
    Endpoint(
        "GET",
        "/v1/movies",
        "GetMovies",
        "Catalog look-up by id (movie_ids=1,2 or repeated); none = the whole catalog (RPC GetMovies)",
        {"movie_ids": "movie_ids", "movieIds": "movie_ids", "ids": "movie_ids"},
    ),
    Endpoint("POST", "/v1/movies", "GetMovies", "Catalog look-up by id, ids in the body (RPC GetMovies)"),
    Endpoint(
        "GET",
        "/v1/movies/search",
        "SearchMovies",
        "Title search: q = words of the title, limit = most movies (0 = 20) (RPC SearchMovies)",
        {"q": "query", "query": "query", "limit": "limit"},
    ),
    Endpoint(
        "POST",
        "/v1/movies:search",
        "SearchMovies",
        "Title search, the request in the body (RPC SearchMovies)",
    ),
    Endpoint(
        "POST",
        "/v1/movies:upsert",
        "UpsertMovies",
        "Add movies or update their metadata while serving; needs the token when auth is on (RPC UpsertMovies)",
    ),
)

OPEN_PATHS = ("/", "/healthz", "/readyz", "/openapi.json")  # and /static/...: no token needed
OPENAPI_PATH = "/openapi.json"

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {
        "oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
    },
    FieldDescriptor.TYPE_FLOAT: {
        "oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
    },
    # proto3 JSON writes 64-bit integers as strings and reads numbers or strings
    FieldDescriptor.TYPE_INT64: {
        "oneOf": [{"type": "string", "pattern": "^-?[0-9]+$"}, {"type": "integer"}],
        "format": "int64",
    },
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}


def _field_schema(f: FieldDescriptor, refs: dict[str, Descriptor]) -> dict[str, Any]:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        value = f.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _field_schema(value, refs)}
    if f.message_type is not None:
        refs[f.message_type.name] = f.message_type
        one: dict[str, Any] = {"$ref": f"#/components/schemas/{f.message_type.name}"}
    elif f.enum_type is not None:
        one = {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    else:
        one = dict(_SCALARS.get(f.type, {}))
    if f.is_repeated:
        return {"type": "array", "items": one}
    return one


def message_schema(d: Descriptor, refs: dict[str, Descriptor]) -> dict[str, Any]:
    """JSON schema of a message in the canonical proto3 JSON mapping (lowerCamelCase names; the proto names
    are accepted too when parsing). Unknown fields are refused."""
    props = {f.json_name: _field_schema(f, refs) for f in d.fields}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "description": f"movierec.v1.{d.name} (proto3 JSON mapping)"}  # fmt: skip


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "code": {"type": "integer", "description": "gRPC status code number (google.rpc.Code)"},
            "status": {"type": "string", "description": "gRPC status code name, e.g. INVALID_ARGUMENT"},
            "message": {
                "type": "string",
                "description": "names the offending field; the gRPC call's message",
            },
        },
        "required": ["code", "status", "message"],
    }


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


ERRORS = {
    "400": "INVALID_ARGUMENT / FAILED_PRECONDITION: malformed JSON, an unknown field, a wrong type, a body over "
    "ServerLimits.max_message_bytes, or a value out of range; the message names the field",
    "401": "UNAUTHENTICATED: auth is on and the request has no valid 'authorization: Bearer <token>' header",
    "404": "NOT_FOUND: a user id the model does not know (recommend), or no such path",
    "429": "RESOURCE_EXHAUSTED: the request queue is full; retry later with backoff",
    "500": "INTERNAL: the server failed (e.g. the catalog overlay file could not be written)",
    "503": "UNAVAILABLE: starting or shutting down",
    "504": "DEADLINE_EXCEEDED",
}


def openapi(endpoints: Sequence[Endpoint] = ENDPOINTS, version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON face."""
    refs: dict[str, Any] = {}  # message name -> Descriptor
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        req, resp = ep.request.DESCRIPTOR, ep.response.DESCRIPTOR
        refs[req.name], refs[resp.name] = req, resp
        op: dict[str, Any] = {
            "operationId": f"{ep.rpc}{'' if ep.method == 'POST' else 'Get'}",
            "summary": ep.summary,
            "responses": {
                "200": {"description": f"movierec.v1.{resp.name}", "content": _json(resp.name)},
                **{code: {"description": text, "content": _json("Error")} for code, text in ERRORS.items()},
            },
        }
        op["security"] = [{}, {"bearer": []}]  # a token when the server has --auth-token-file
        if ep.method == "POST":
            op["requestBody"] = {"required": False, "content": _json(req.name)}
        else:
            op["parameters"] = [
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "description": f"request field {target}" + (" (repeat, or separate with commas)"
                                                                if req.fields_by_name[target].is_repeated else ""),
                    "schema": {"type": "string"},
                }
                for name, target in ep.params.items()
            ]  # fmt: skip
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    health = {
        "description": "HealthCheckResponse status",
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}
        },
    }
    paths["/healthz"] = {"get": {"operationId": "Live", "summary": "Liveness: 200 while the process serves HTTP",
                                 "responses": {"200": health}}}  # fmt: skip
    paths["/readyz"] = {
        "get": {
            "operationId": "Ready",
            "summary": "Readiness: the gRPC health state (grpc.health.v1) of the server, or of ?service=NAME",
            "parameters": [
                {"name": "service", "in": "query", "required": False, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": health,
                "503": health,
                "404": {"description": "unknown service", "content": _json("Error")},
            },
        }
    }
    schemas: dict[str, Any] = {"Error": _error_schema()}
    done: set[str] = set()
    while len(done) < len(refs):
        for name, d in sorted(refs.items()):
            if name not in done:
                schemas[name] = message_schema(d, refs)
                done.add(name)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "movierec HTTP/JSON API",
            "version": version,
            "description": "The movierec.v1.RecommenderService RPCs over HTTP: bodies are the RPC messages in "
            "the canonical proto3 JSON mapping; errors map gRPC codes to HTTP statuses (google.rpc.Code).",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
