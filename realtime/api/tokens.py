"""REST for the platform's backend: revoking tokens before they expire."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..access.revocations import ACCESS_STREAM, REVOKED, TOO_MANY
from ..auth import MAX_CLAIM
from ..persistence.events import NewEvent, Rejected
from . import schema
from .common import ApiError, caller, json_body, label, require_service, state_of


def _revocation(data: dict[str, Any], max_lifetime: float) -> dict[str, Any] | None:
    """The ``token.revoked`` event's data; None for a token that has expired already."""
    if ("user_id" in data) == ("jti" in data):
        raise ApiError(400, "invalid", "give either 'user_id', or 'jti' and 'exp'")
    if "user_id" in data:
        user_id = label(data["user_id"], "user_id", MAX_CLAIM)
        # Tokens are issued at iat; the ones issued before this moment are refused. With a
        # longest lifetime, every one of them has expired by the moment plus it.
        moment = round(time.time(), 3)
        lapses = moment + max_lifetime if max_lifetime else 0.0
        return {"user_id": user_id, "issued_before": moment, "expires_at": lapses}
    jti = label(data["jti"], "jti", MAX_CLAIM)
    exp = data.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp < 2**53:
        raise ApiError(400, "invalid", "'exp' must be the token's expiry (seconds since 1970)")
    if exp < time.time():
        return None  # its expiry refuses it already: nothing to keep
    return {"jti": jti, "expires_at": float(exp)}


async def revoke(request: Request) -> Response:
    """Refuse every token of a user issued until now, or one token (by ``jti``): stored, then
    every process closes what it covers (access/service.py)."""
    principal = caller(request)
    require_service(principal)
    state = state_of(request)
    data = _revocation(await json_body(request), state.settings.token_max_lifetime)
    if data is not None:
        event = NewEvent(ACCESS_STREAM, REVOKED, principal.user_id, principal.name, None, data)
        try:
            await state.writer.append(event)
        except Rejected as exc:
            raise ApiError(409, TOO_MANY, exc.message) from None
        except Exception:
            raise ApiError(503, "unavailable", "not stored; send it again") from None
    return Response(status_code=204)


routes = [Route("/api/tokens/revoke", revoke, methods=["POST"])]

operations = [
    schema.Op(
        "POST",
        "/api/tokens/revoke",
        "Refuse every token of a user issued until now, or one token by its `jti`",
        {204: None},
        auth="service",
        body={
            "anyOf": [
                schema.obj({"user_id": schema.string(1, MAX_CLAIM)}),
                schema.obj(
                    {
                        "jti": schema.string(1, MAX_CLAIM),
                        "exp": schema.NUMBER | {"exclusiveMinimum": 0},
                    }
                ),
            ]
        },
        errors=(409,),
    )
]
