"""What every REST route shares: the caller, JSON bodies and errors."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ..auth import AuthError, Principal, bearer_token
from ..persistence.database import cannot_serve
from ..protocol import has_control, has_nul
from ..state import State

MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger("menteo.api")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers  # e.g. Retry-After on a 429


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    response = json_response({"error": {"code": code, "message": message}}, status)
    if headers:
        response.headers.update(headers)
    return response


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """The database could not serve the request (down, or its pool busy past its timeout):
    503 ``unavailable``, as for a write that could not be stored; the client sends it again.
    (Without this, such a read before the write was a 500.) Any other database or OS
    error stays what it was: a 500."""
    if not cannot_serve(exc):
        raise exc
    log.warning("%s %s: the database is unavailable (%r)", request.method, request.url.path, exc)
    return error_response(503, "unavailable", "the database is unavailable; send it again")


def state_of(request: Request) -> State:
    state: State = request.app.state.menteo
    return state


def caller(request: Request) -> Principal:
    try:
        return state_of(request).tokens.verify(bearer_token(request.headers.get("authorization")))
    except AuthError as exc:
        raise ApiError(401, "unauthorized", f"a valid Bearer token is required: {exc}") from None


def require_service(principal: Principal) -> None:
    if not principal.is_service:
        raise ApiError(403, "forbidden", "this route needs a service token")


async def json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large(request)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid", "the body must be a JSON object")
    return data


def _too_large(request: Request) -> ApiError:
    state_of(request).metrics.inc("menteo_limit_hits_total", "rest_body_too_large")
    return ApiError(413, "too_large", f"the body may be at most {MAX_BODY_BYTES} bytes")


def text(data: dict[str, Any], name: str, max_len: int, *, min_len: int = 1) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not min_len <= len(value.strip()) <= max_len or has_nul(value):
        raise ApiError(
            400, "invalid", f"'{name}' must be a string of {min_len}..{max_len} characters, no NUL"
        )
    return value.strip()


def label(value: object, name: str, max_len: int) -> str:
    """An id or a name: 1..``max_len`` characters, no control character or lone surrogate
    (it reaches frames, presence entries and logs as one line)."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_len or has_control(value):
        raise ApiError(
            400,
            "invalid",
            f"'{name}' must be a string of 1..{max_len} characters, "
            "no control character or lone surrogate",
        )
    return value


def int_param(request: Request, name: str, default: int | None, *, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid", f"'{name}' must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "invalid", f"'{name}' must be between {lo} and {hi}")
    return value


def nul_refusal(scope: Scope) -> Response | None:
    """The answer to an HTTP request with a NUL in its path (404: no id has one) or query
    (400 ``invalid``), before any route reads it: PostgreSQL refuses a NUL in text, so a
    lookup by such an id was a 500 there (found by tests/test_openapi.py's schemathesis run)."""
    if "\x00" in scope["path"]:
        return error_response(404, "not_found", "no such thing: a path has no NUL")
    if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
        return error_response(400, "invalid", "a query parameter has no NUL")
    return None
