"""REST for a room's shared notes: the current text, and a Markdown export."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..notes import store
from . import schema
from .common import caller, json_response, state_of
from .rooms import visible_room


async def get_notes(request: Request) -> Response:
    room = await visible_room(request, caller(request))
    state = state_of(request)
    text = store.text_of((await store.read(state.db, room.id, state.metrics)).doc)
    markdown = (
        f"# {room.title}: notes\n\n{text.rstrip()}\n"
        if text.strip()
        else f"# {room.title}: notes\n"
    )
    return json_response({"text": text, "markdown": markdown})


routes = [Route("/api/rooms/{room_id}/notes", get_notes, methods=["GET"])]

operations = [
    schema.Op(
        "GET",
        "/api/rooms/{room_id}/notes",
        "The room's notes as plain text and as Markdown",
        {200: schema.obj({"text": schema.string(), "markdown": schema.string()})},
        errors=(403, 404),
    )
]
