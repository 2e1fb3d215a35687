"""REST for a room's shared notes: the current text, and a Markdown export."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..notes import store
from .common import caller, json_response, state_of
from .rooms import visible_room


async def get_notes(request: Request) -> Response:
    room = await visible_room(request, caller(request))
    doc: Doc[Any] = Doc()
    async with state_of(request).db.read() as db:
        await store.load(db, room.id, doc)
    text = store.text_of(doc)
    markdown = (
        f"# {room.title}: notes\n\n{text.rstrip()}\n"
        if text.strip()
        else f"# {room.title}: notes\n"
    )
    return json_response({"text": text, "markdown": markdown})


routes = [Route("/api/rooms/{room_id}/notes", get_notes, methods=["GET"])]
