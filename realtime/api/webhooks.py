"""``GET /api/webhooks/failed``: the webhook notifications given up on, newest first, with
their last error (service tokens only; docs/webhooks.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..notify.outbox import failed_sync
from . import schema
from .common import caller, int_param, json_response, require_service, state_of

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


async def failed(request: Request) -> Response:
    principal = caller(request)
    require_service(principal)
    limit = int_param(request, "limit", DEFAULT_LIMIT, lo=1, hi=MAX_LIMIT)
    assert limit is not None
    # Read from the table even when MENTEO_WEBHOOK_URL is unset now: what failed before stays.
    rows = await state_of(request).db.run(failed_sync, limit)
    return json_response({"failed": rows})


routes = [Route("/api/webhooks/failed", failed, methods=["GET"])]

FAILED = {
    "id": schema.string(),
    "type": schema.string(),
    "user_id": schema.string(),
    "attempts": schema.integer(0),
    "last_error": schema.nullable(schema.string()),
    "created_at": schema.string(),
    "failed_at": schema.string(),
}
operations = [
    schema.Op(
        "GET",
        "/api/webhooks/failed",
        "Webhook notifications given up on (a 4xx, or `MENTEO_WEBHOOK_MAX_ATTEMPTS` "
        "reached), newest first, with their last error",
        {200: schema.obj({"failed": schema.array(schema.obj(FAILED))})},
        auth="service",
        query=(schema.Param("limit", schema.integer(1, MAX_LIMIT), f"default {DEFAULT_LIMIT}"),),
    )
]
