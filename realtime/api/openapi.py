"""``GET /api/openapi.json``: the OpenAPI 3.1 document of the REST routes (api/schema.py),
made once per app from its routes and the operations each route module declares."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..metrics import version
from . import checklist, client, feed, notes, rooms, schema, tokens, webhooks
from .common import json_response

PATH = "/api/openapi.json"

# The chat routes (delete, search) and the read state's digest, declared here rather than
# beside their handlers (api/chat.py, api/rooms.py); moving them there is a later tidy-up.
SEARCH_HIT = {
    "seq": schema.integer(1),
    "id": schema.nullable(schema.string()),
    "author": schema.AUTHOR,
    "body": schema.string(),
    "ts": schema.string(),
    "snippet": schema.string(),
}
SEARCH_QUERY = schema.Param("q", schema.string(1, 200), "words to find", required=True)
SEARCH_LIMIT = schema.Param("limit", schema.integer(1, 100), "default 20")
CHAT_AND_READS = [
    schema.Op(
        "DELETE",
        "/api/rooms/{room_id}/messages/{seq}",
        "Erase a chat message (`chat.deleted`)",
        {204: None},
        auth="service",
        errors=(404,),
        path_params={"seq": schema.integer(1, 2**62)},
    ),
    schema.Op(
        "GET",
        "/api/rooms/{room_id}/search",
        "Search a room's chat messages",
        {200: schema.obj({"results": schema.array(schema.obj(SEARCH_HIT))})},
        query=(SEARCH_QUERY, rooms.BEFORE, SEARCH_LIMIT),
        errors=(403, 404, 429),
    ),
    schema.Op(
        "GET",
        "/api/search",
        "Search the chat of every room the caller is a member of",
        {
            200: schema.obj(
                {"results": schema.array(schema.obj(SEARCH_HIT | {"room_id": schema.string()}))}
            )
        },
        query=(SEARCH_QUERY, SEARCH_LIMIT),
        errors=(403, 429),
    ),
    schema.Op(
        "GET",
        "/api/rooms/{room_id}/digest",
        "What the others did in the room after `since`",
        {
            200: schema.obj(
                {"room_id": schema.string(), "from_seq": schema.SEQ, "to_seq": schema.SEQ}
                | {"messages": schema.integer(0), "by": schema.array(schema.ANY_OBJECT)}
                | {"checklist": schema.ANY_OBJECT, "notes": schema.ANY_OBJECT}
                | {"first_unread_seq": schema.nullable(schema.integer(1))}
                | {"truncated": schema.BOOLEAN}
            )
        },
        query=(schema.Param("since", schema.integer(0, 2**62), "default: the caller's marker"),),
        errors=(403, 404),
    ),
]

OWN = schema.Op(
    "GET",
    PATH,
    "This document",
    {200: {"type": "object", "required": ["openapi", "paths"]}},
    auth="none",
)
OPERATIONS = [
    *rooms.operations,
    *checklist.operations,
    *notes.operations,
    *feed.operations,
    *client.operations,
    *tokens.operations,
    *webhooks.operations,
    *CHAT_AND_READS,
    OWN,
]


async def openapi(request: Request) -> Response:
    """The document, made on the first request (the routes are fixed by then)."""
    made = getattr(request.app.state, "openapi", None)
    if made is None:
        made = request.app.state.openapi = json_response(
            schema.document(request.app.routes, OPERATIONS, version=version())
        ).body
    return Response(made, media_type="application/json")


routes = [Route(PATH, openapi, methods=["GET"])]
