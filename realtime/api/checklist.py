"""REST for roadmap templates and room checklists."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from sqlalchemy import insert, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..checklist.model import MAX_DESCRIPTION, MAX_ITEMS, MAX_TITLE
from ..checklist.store import load_checklist
from ..persistence.events import NewEvent, Rejected, last_seqs, now_iso
from ..persistence.models import Roadmap
from ..streams.history import page_before
from .common import (
    ApiError,
    caller,
    int_param,
    json_body,
    json_response,
    require_service,
    state_of,
    text,
)
from .rooms import visible_room

ROADMAP = Roadmap.__table__  # type: ignore[attr-defined]
CHECKLIST_TYPES = tuple(
    "checklist." + op for op in ("add", "toggle", "rename", "move", "remove", "verify")
)


def _roadmap(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "steps": orjson.loads(row.steps),
        "created_at": row.created_at,
    }


async def create_roadmap(request: Request) -> Response:
    require_service(caller(request))
    data = await json_body(request)
    title = text(data, "title", MAX_TITLE)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not 1 <= len(raw_steps) <= MAX_ITEMS:
        raise ApiError(400, "invalid", f"'steps' must be a list of 1..{MAX_ITEMS} steps")
    steps = []
    for raw in raw_steps:
        if not isinstance(raw, dict):
            raise ApiError(400, "invalid", "each step is an object with a 'title'")
        step = {"title": text(raw, "title", MAX_TITLE)}
        if raw.get("description") is not None:
            step["description"] = text(raw, "description", MAX_DESCRIPTION, min_len=0)
        steps.append(step)
    roadmap = {"id": uuid.uuid4().hex, "title": title, "steps": steps, "created_at": now_iso()}
    async with state_of(request).db.write() as db:
        await db.execute(
            insert(ROADMAP).values(**roadmap | {"steps": orjson.dumps(steps).decode()})
        )
    return json_response(roadmap, 201)


async def list_roadmaps(request: Request) -> Response:
    caller(request)
    async with state_of(request).db.read() as db:
        rows = await db.execute(select(ROADMAP).order_by(ROADMAP.c.created_at, ROADMAP.c.id))
        return json_response({"roadmaps": [_roadmap(r) for r in rows]})


async def copy_roadmap(request: Request) -> Response:
    """Copy a roadmap's steps into the room's checklist: one ``checklist.add`` event each.

    Copying the same roadmap again adds nothing (the operations have stable ids).
    """
    principal = caller(request)
    room = await visible_room(request, principal)
    member = room.member(principal.user_id)
    if not principal.is_service and (member is None or member.role != "mentor"):
        raise ApiError(403, "forbidden", "only the room's mentor or the backend may do this")
    roadmap_id = text(await json_body(request), "roadmap_id", 64)
    state = state_of(request)
    async with state.db.read() as db:
        row = (await db.execute(select(ROADMAP).where(ROADMAP.c.id == roadmap_id))).first()
    if row is None:
        raise ApiError(404, "not_found", "no such roadmap")
    steps = orjson.loads(row.steps)
    futures = [
        state.writer.append(
            NewEvent(
                room.id,
                "checklist.add",
                principal.user_id,
                principal.name,
                f"roadmap:{roadmap_id[:32]}:{n}",
                {
                    "item_id": f"{roadmap_id[:12]}-{n}",
                    "title": step["title"],
                    "description": step.get("description", ""),
                },
            )
        )
        for n, step in enumerate(steps, start=1)
    ]
    results = await asyncio.gather(*futures, return_exceptions=True)
    added = sum(1 for r in results if not isinstance(r, BaseException) and r.created)
    refused = [r for r in results if isinstance(r, Rejected)]
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, Rejected)]
    if failed:
        raise ApiError(503, "unavailable", "some steps could not be stored; send it again")
    async with state.db.snapshot() as db:
        seq = (await last_seqs(db, [room.id]))[room.id]
        snapshot = (await load_checklist(db, room.id)).snapshot()
    body = {
        "room_id": room.id,
        "roadmap_id": roadmap_id,
        "added": added,
        "refused": [{"code": r.code, "message": r.message} for r in refused],
        "seq": seq,
        "checklist": snapshot,
    }
    return json_response(body, 201 if added else 200)


async def get_checklist(request: Request) -> Response:
    room = await visible_room(request, caller(request))
    async with state_of(request).db.snapshot() as db:
        seq = (await last_seqs(db, [room.id]))[room.id]
        snapshot = (await load_checklist(db, room.id)).snapshot()
    return json_response(snapshot | {"seq": seq})


async def checklist_history(request: Request) -> Response:
    """The audit trail: every checklist operation, who and when, oldest → newest per page."""
    room = await visible_room(request, caller(request))
    before = int_param(request, "before", None, lo=1, hi=2**62)
    limit = int_param(request, "limit", 50, lo=1, hi=100)
    assert limit is not None
    events, has_more = await page_before(
        state_of(request).db, room.id, CHECKLIST_TYPES, before, limit
    )
    return json_response({"events": [e.frame() for e in events], "has_more": has_more})


routes = [
    Route("/api/roadmaps", create_roadmap, methods=["POST"]),
    Route("/api/roadmaps", list_roadmaps, methods=["GET"]),
    Route("/api/rooms/{room_id}/checklist", copy_roadmap, methods=["POST"]),
    Route("/api/rooms/{room_id}/checklist", get_checklist, methods=["GET"]),
    Route("/api/rooms/{room_id}/checklist/history", checklist_history, methods=["GET"]),
]
