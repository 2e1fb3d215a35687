"""What the web pages ask the server before they open: no token needed, nothing secret."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import schema
from .common import json_response, state_of


async def client_config(request: Request) -> Response:
    """The origins a page may take its ``token_url`` from besides its own
    (``MENTEO_ALLOWED_ORIGINS``, the same list the sockets check; ``*`` allows any)."""
    settings = state_of(request).settings
    return json_response({"allowed_origins": list(settings.allowed_origins)})


routes = [Route("/api/client-config", client_config, methods=["GET"])]

operations = [
    schema.Op(
        "GET",
        "/api/client-config",
        "What a web page asks before it opens (no token needed)",
        {200: schema.obj({"allowed_origins": schema.array(schema.string())})},
        auth="none",
    )
]
