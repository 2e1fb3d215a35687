"""The OpenAPI 3.1 document, from what each route module declares beside its handlers.

A route module lists its ``operations`` (``Op``: method, path, who may call it, query,
body and responses as JSON Schema) next to its ``routes``; ``document`` walks the app's
routes and describes each ``/api/`` route by its operation. Only routes the app has are
described (an operation declared for a route not routed is left out), and ``undocumented``
names the routes that have no operation (tests/test_openapi.py fails on any).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.routing import BaseRoute, Route

Schema = dict[str, Any]
Auth = Literal["none", "token", "service"]

API_PREFIX = "/api/"
# Components every operation may name with ``ref``; registered by ``component``.
COMPONENTS: dict[str, Schema] = {}


# JSON Schema helpers ------------------------------------------------------------------------


def component(name: str, schema: Schema) -> Schema:
    """Register ``schema`` under ``#/components/schemas/name``; a reference to it."""
    COMPONENTS[name] = schema
    return ref(name)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def string(lo: int | None = None, hi: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if lo is not None:
        schema["minLength"] = lo
    if hi is not None:
        schema["maxLength"] = hi
    return schema


def integer(lo: int | None = None, hi: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return schema


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema, hi: int | None = None, lo: int | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if lo is not None:
        schema["minItems"] = lo
    if hi is not None:
        schema["maxItems"] = hi
    return schema


def obj(required: Mapping[str, Schema], optional: Mapping[str, Schema] | None = None) -> Schema:
    """An object with these properties; others may be added later (a reply may grow, never
    lose a field), so a client ignores what it does not know."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


BOOLEAN: Schema = {"type": "boolean"}
NUMBER: Schema = {"type": "number"}
ANY_OBJECT: Schema = {"type": "object"}
SEQ = integer(0)
ERROR = component(
    "Error",
    obj({"error": obj({"code": string(), "message": string()})}),
)
AUTHOR = component("Author", obj({"user_id": string(), "name": string()}))


# Operations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: Schema
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Op:
    """One method on one path: what it takes and what it answers.

    ``responses``: status -> the body's schema (None: no body). The errors every route of
    its kind can answer are added by ``_errors``; ``errors`` names the others
    (e.g. 404, 409, 429)."""

    method: str
    path: str
    summary: str
    responses: Mapping[int, Schema | None]
    auth: Auth = "token"
    query: Sequence[Param] = ()
    body: Schema | None = None
    errors: Sequence[int] = ()
    idempotency_key: bool = False
    description: str = ""
    path_params: Mapping[str, Schema] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.method.upper(), self.path)


ERROR_TEXT = {
    400: "invalid request (`invalid`, `bad_json`)",
    401: "no valid Bearer token (`unauthorized`)",
    403: "the token may not do this (`forbidden`)",
    404: "no such thing (`not_found`)",
    409: "the current state refuses it",
    413: "the body is over 64 KiB (`too_large`)",
    429: "over a rate (`rate_limited`); `Retry-After` says when to try again",
    503: "the database is unavailable (`unavailable`): send it again",
}


def _errors(op: Op) -> list[int]:
    """The error statuses ``op`` may answer: its own and those of every route like it."""
    found = set(op.errors)
    if op.auth != "none":
        found |= {401, 503}
    if op.auth == "service":
        found.add(403)
    if op.body is not None:
        found |= {400, 413}
    if op.query or op.idempotency_key:
        found.add(400)
    return sorted(found)


PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def _parameters(op: Op) -> list[Schema]:
    params: list[Schema] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": op.path_params.get(name, string(1)),
        }
        for name in PATH_PARAM.findall(op.path)
    ]
    for p in op.query:
        entry: Schema = {"name": p.name, "in": "query", "required": p.required, "schema": p.schema}
        if p.description:
            entry["description"] = p.description
        params.append(entry)
    if op.idempotency_key:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": string(1, 64),
                "description": "a retried write with the same key creates nothing new",
            }
        )
    return params


def _responses(op: Op) -> Schema:
    out: Schema = {}
    for status, body in op.responses.items():
        answer: Schema = {"description": "OK" if status < 300 else str(status)}
        if status in (200, 201) and body is not None:
            answer["description"] = "created" if status == 201 else "OK"
        if body is not None:
            answer["content"] = {"application/json": {"schema": body}}
        out[str(status)] = answer
    for status in _errors(op):
        error: Schema = {
            "description": ERROR_TEXT.get(status, "refused"),
            "content": {"application/json": {"schema": ERROR}},
        }
        if status == 429:
            error["headers"] = {"Retry-After": {"schema": integer(1)}}
        out[str(status)] = error
    return out


def operation(op: Op) -> Schema:
    """The OpenAPI Operation Object of ``op``."""
    entry: Schema = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "parameters": _parameters(op),
        "responses": _responses(op),
        "security": [] if op.auth == "none" else [{"bearer": []}],
    }
    if op.description:
        entry["description"] = op.description
    if op.auth == "service":
        entry["description"] = (op.description + "\n\n" if op.description else "") + (
            "Needs a service token (`role: service`)."
        )
    if op.body is not None:
        entry["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    return entry


def _operation_id(op: Op) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", PATH_PARAM.sub(r"by_\1", op.path)) if w]
    return "_".join([op.method.lower(), *words[1:]])  # words[0] is "api"


# The document -------------------------------------------------------------------------------


def api_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path) of every REST route of the app: each ``Route`` under ``/api/``
    (HEAD, which Starlette adds to every GET, aside)."""
    found = []
    for route in routes:
        if isinstance(route, Route) and route.path.startswith(API_PREFIX):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def undocumented(routes: Iterable[BaseRoute], operations: Iterable[Op]) -> list[tuple[str, str]]:
    """The app's REST routes that no operation describes."""
    keys = {op.key for op in operations}
    return [key for key in api_routes(routes) if key not in keys]


def document(
    routes: Iterable[BaseRoute], operations: Iterable[Op], *, version: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's REST routes that have an operation."""
    ops = {op.key: op for op in operations}
    paths: dict[str, Schema] = {}
    for method, path in api_routes(routes):
        op = ops.get((method, path))
        if op is not None:
            paths.setdefault(path, {})[method.lower()] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Menteo realtime REST API",
            "version": version,
            "description": (
                "The REST routes of Menteo realtime (docs/protocol.md, REST API). Errors are "
                '`{"error": {"code", "message"}}`. The sockets and the event stream are '
                "described in docs/protocol.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(COMPONENTS.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a token signed with MENTEO_SECRET (HS256); "
                    "`role: service` for the platform's backend",
                }
            },
        },
    }
