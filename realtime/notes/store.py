"""Loading, saving and compacting a room's notes document."""

from __future__ import annotations

import base64
from typing import Any

from pycrdt import Doc, Text
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.database import Database
from ..persistence.events import EVENT, StoredEvent, now_iso, replay
from ..persistence.models import NoteSnapshot
from ..persistence.rooms import notes_stream

SNAPSHOT = NoteSnapshot.__table__  # type: ignore[attr-defined]
TEXT = "notes"  # the Y.Text editors bind to
PAGE = 1000


def update_of(event: StoredEvent) -> bytes:
    return base64.b64decode(event.data["u"])


def event_data(update: bytes, conn_id: str) -> dict[str, str]:
    # ``c`` is the socket it came from, so that the sender is not sent its own update back.
    return {"u": base64.b64encode(update).decode(), "c": conn_id}


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get(TEXT, type=Text))


async def load(conn: AsyncConnection, room_id: str, doc: Doc[Any]) -> tuple[int, int]:
    """Apply the latest snapshot and every update after it; returns (last seq, updates read)."""
    row = (
        await conn.execute(
            select(SNAPSHOT.c.seq, SNAPSHOT.c.state)
            .where(SNAPSHOT.c.room_id == room_id)
            .order_by(SNAPSHOT.c.seq.desc())
            .limit(1)
        )
    ).first()
    seq = 0
    if row is not None:
        doc.apply_update(row.state)
        seq = row.seq
    count = 0
    while True:
        events = await replay(conn, notes_stream(room_id), seq, PAGE)
        for event in events:
            doc.apply_update(update_of(event))
            seq = event.seq
        count += len(events)
        if len(events) < PAGE:
            return seq, count


async def compact(db: Database, room_id: str, doc: Doc[Any], seq: int, *, keep_after: str) -> None:
    """Store ``doc`` (which holds every update up to ``seq``) as a snapshot, and drop the
    updates it covers that are older than ``keep_after`` (an ISO time): a process that is
    briefly behind can still read them."""
    async with db.write() as conn:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(SNAPSHOT).values(
                        room_id=room_id, seq=seq, state=doc.get_update(), created_at=now_iso()
                    )
                )
        except IntegrityError:
            return  # another process took this snapshot already
        await conn.execute(
            delete(SNAPSHOT).where(SNAPSHOT.c.room_id == room_id, SNAPSHOT.c.seq < seq)
        )
        await conn.execute(
            delete(EVENT).where(
                EVENT.c.stream == notes_stream(room_id), EVENT.c.seq <= seq, EVENT.c.ts < keep_after
            )
        )
