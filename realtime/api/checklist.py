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

from ..auth import Principal
from ..checklist.limits import CopyLimits, StepBudget
from ..checklist.model import MAX_DESCRIPTION, MAX_ITEMS, MAX_TITLE, ROADMAP_ID_PREFIX
from ..checklist.store import live_ids, load_checklist
from ..feed.limits import retry_after_header
from ..persistence.events import AppendResult, NewEvent, Rejected, last_seqs, now_iso
from ..persistence.models import Roadmap
from ..state import State
from ..streams.history import page_before
from . import schema
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
from .rooms import BEFORE, LIMIT, visible_room

ROADMAP = Roadmap.__table__  # type: ignore[attr-defined]
# Steps queued at once: a transaction holds a few, never a whole roadmap, so the other rooms'
# messages that share a batch with one wait about as long as for a chat message.
COPY_CHUNK = 10
CHECKLIST_TYPES = tuple(
    "checklist." + op for op in ("add", "toggle", "rename", "move", "remove", "verify")
)


def _copy_limits(request: Request) -> CopyLimits:
    """This app's roadmap budgets, made on first use from its settings."""
    limits: CopyLimits | None = getattr(request.app.state, "roadmap_copy_limits", None)
    if limits is None:
        settings = state_of(request).settings
        limits = CopyLimits(
            StepBudget(settings.roadmap_copy_user_rate, settings.roadmap_copy_user_burst),
            StepBudget(settings.roadmap_copy_room_rate, settings.roadmap_copy_room_burst),
        )
        request.app.state.roadmap_copy_limits = limits
    return limits


def _charge(
    state: State, limits: CopyLimits, principal: Principal, room_id: str | None, steps: int
) -> None:
    """Charge ``steps`` to the caller's budget and the room's, or refuse with 429."""
    waits = {"roadmap_copy_user": limits.per_user.wait(principal.user_id, steps)}
    if room_id is not None:
        waits["roadmap_copy_room"] = limits.per_room.wait(room_id, steps)
    over = {name: wait for name, wait in waits.items() if wait > 0}
    if over:
        for name in over:
            state.metrics.inc("menteo_limit_hits_total", name)
        wait = max(over.values())
        raise ApiError(
            429,
            "rate_limited",
            f"too many roadmap steps queued: try again in {wait:.1f} s",
            {"Retry-After": retry_after_header(wait)},
        )
    limits.per_user.take(principal.user_id, steps)
    if room_id is not None:
        limits.per_room.take(room_id, steps)


def step_id(roadmap_id: str, n: int) -> str:
    """A copied step's item id, in a namespace members may not add to (so none can claim
    it beforehand and make the copy add nothing)."""
    return f"{ROADMAP_ID_PREFIX}{roadmap_id[:48]}:{n}"


def _roadmap(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "steps": orjson.loads(row.steps),
        "created_at": row.created_at,
    }


async def create_roadmap(request: Request) -> Response:
    principal = caller(request)
    require_service(principal)
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
    # A write like any other: one unit of the caller's roadmap budget (it queues no events).
    _charge(state_of(request), _copy_limits(request), principal, None, 1)
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


async def _numbered_steps(state: State, roadmap_id: str) -> list[tuple[int, Any]]:
    """The roadmap's steps numbered from 1 (a step's number makes its item id), or 404."""
    async with state.db.read() as db:
        row = (await db.execute(select(ROADMAP).where(ROADMAP.c.id == roadmap_id))).first()
    if row is None:
        raise ApiError(404, "not_found", "no such roadmap")
    return list(enumerate(orjson.loads(row.steps), start=1))


def _step_event(principal: Principal, room_id: str, roadmap_id: str, n: int, step: Any) -> NewEvent:
    """The ``checklist.add`` event that copies step ``n`` of the roadmap."""
    return NewEvent(
        room_id,
        "checklist.add",
        principal.user_id,
        principal.name,
        f"roadmap:{roadmap_id[:32]}:{n}",
        {
            "item_id": step_id(roadmap_id, n),
            "title": step["title"],
            "description": step.get("description", ""),
        },
        service=principal.is_service,
    )


async def _append_steps(
    state: State,
    principal: Principal,
    room_id: str,
    roadmap_id: str,
    queued: list[tuple[int, Any]],
) -> list[AppendResult | BaseException]:
    """Queue the steps to the writer ``COPY_CHUNK`` at a time; each result or its exception."""
    results: list[AppendResult | BaseException] = []
    for start in range(0, len(queued), COPY_CHUNK):  # other rooms' writes go between chunks
        futures = [
            state.writer.append(_step_event(principal, room_id, roadmap_id, n, step))
            for n, step in queued[start : start + COPY_CHUNK]
        ]
        results += await asyncio.gather(*futures, return_exceptions=True)
    return results


async def copy_roadmap(request: Request) -> Response:
    """Copy a roadmap's steps into the room's checklist: one ``checklist.add`` event each.

    Copying the same roadmap again adds nothing (the steps have stable ids, and those already
    in the list are not queued again). Charged by the steps it queues (``_charge``).
    """
    principal = caller(request)
    room = await visible_room(request, principal)
    member = room.member(principal.user_id)
    if not principal.is_service and (member is None or member.role != "mentor"):
        raise ApiError(403, "forbidden", "only the room's mentor or the backend may do this")
    if room.archived:
        raise ApiError(409, "archived", "the room is archived: it is read-only")
    roadmap_id = text(await json_body(request), "roadmap_id", 64)
    state = state_of(request)
    steps = await _numbered_steps(state, roadmap_id)
    async with state.db.snapshot() as db:
        present = await live_ids(db, room.id)
    queued = [(n, step) for n, step in steps if step_id(roadmap_id, n) not in present]
    _charge(state, _copy_limits(request), principal, room.id, len(queued))
    results = await _append_steps(state, principal, room.id, roadmap_id, queued)
    added = sum(1 for r in results if not isinstance(r, BaseException) and r.created)
    refused = [
        Rejected("conflict", f"checklist item {step_id(roadmap_id, n)!r} already exists")
        for n, _ in steps
        if step_id(roadmap_id, n) in present
    ] + [r for r in results if isinstance(r, Rejected)]
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


# The OpenAPI description of these routes (api/schema.py) ----------------------------------

NULLABLE_TEXT = schema.nullable(schema.string())
ITEM = schema.component(
    "ChecklistItem",
    schema.obj(
        {"id": schema.string(), "title": schema.string(), "pos": schema.string()}
        | {"description": schema.string(), "done": schema.BOOLEAN, "done_by": NULLABLE_TEXT}
        | {"done_at": NULLABLE_TEXT, "verified": schema.BOOLEAN, "verified_by": NULLABLE_TEXT}
        | {"verified_at": NULLABLE_TEXT, "verified_title": NULLABLE_TEXT}
        | {"added_by": NULLABLE_TEXT}
    ),
)
CHECKLIST = {
    "items": schema.array(ITEM),
    "progress": schema.obj(
        {"done": schema.integer(0), "verified": schema.integer(0), "total": schema.integer(0)}
    ),
    "seq": schema.SEQ,
}
STEP = schema.obj(
    {"title": schema.string(1, MAX_TITLE)},
    {"description": schema.nullable(schema.string(0, MAX_DESCRIPTION))},
)
ROADMAP_SCHEMA = schema.component(
    "Roadmap",
    schema.obj(
        {
            "id": schema.string(),
            "title": schema.string(),
            "steps": schema.array(STEP),
            "created_at": schema.string(),
        }
    ),
)
COPIED = schema.obj(
    {
        "room_id": schema.string(),
        "roadmap_id": schema.string(),
        "added": schema.integer(0),
        "refused": schema.array(schema.obj({"code": schema.string(), "message": schema.string()})),
        "seq": schema.SEQ,
        "checklist": schema.obj({"items": CHECKLIST["items"], "progress": CHECKLIST["progress"]}),
    }
)
EVENT = schema.component(
    "RoomEvent",
    schema.obj(
        {
            "type": schema.string(),
            "seq": schema.integer(1),
            "id": schema.nullable(schema.string()),
            "author": schema.AUTHOR,
            "ts": schema.string(),
        }
    ),
)

operations = [
    schema.Op(
        "POST",
        "/api/roadmaps",
        "Create a roadmap template",
        {201: ROADMAP_SCHEMA},
        auth="service",
        body=schema.obj(
            {"title": schema.string(1, MAX_TITLE), "steps": schema.array(STEP, MAX_ITEMS, 1)}
        ),
        errors=(429,),
    ),
    schema.Op(
        "GET",
        "/api/roadmaps",
        "Every roadmap template",
        {200: schema.obj({"roadmaps": schema.array(ROADMAP_SCHEMA)})},
    ),
    schema.Op(
        "POST",
        "/api/rooms/{room_id}/checklist",
        "Copy a roadmap's steps into the room's checklist (201 when it added some)",
        {201: COPIED, 200: COPIED},
        body=schema.obj({"roadmap_id": schema.string(1, 64)}),
        errors=(403, 404, 409, 429),
    ),
    schema.Op(
        "GET",
        "/api/rooms/{room_id}/checklist",
        "The room's checklist and its progress",
        {200: schema.obj(CHECKLIST)},
        errors=(403, 404),
    ),
    schema.Op(
        "GET",
        "/api/rooms/{room_id}/checklist/history",
        "The checklist's audit trail: its operations, oldest to newest",
        {200: schema.obj({"events": schema.array(EVENT), "has_more": schema.BOOLEAN})},
        query=(BEFORE, LIMIT),
        errors=(403, 404),
    ),
]
