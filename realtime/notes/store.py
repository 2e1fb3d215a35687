"""Loading, saving and compacting a room's notes document.

A stored history that does not load whole is never an error for ever: ``load`` keeps what
applies (the newest snapshot that loads, then every update that applies after it) and
lists the rest; ``quarantine`` marks those update rows ``notes.quarantined`` so that they
are kept aside (never applied again, never compacted away) and reported once.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Text
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..metrics import Metrics
from ..persistence.database import Database
from ..persistence.events import EVENT, StoredEvent, now_iso
from ..persistence.models import NoteSnapshot
from ..persistence.rooms import notes_stream
from ..streams.history import Replay
from .updates import describe, rebuild, try_apply

log = logging.getLogger("menteo.notes")

SNAPSHOT = NoteSnapshot.__table__  # type: ignore[attr-defined]
TEXT = "notes"  # the Y.Text editors bind to
PAGE = 1000
UPDATE = "notes.update"
QUARANTINED = "notes.quarantined"  # an update row that does not apply: kept, never applied
# Who wrote the updates a compaction drops, and when last: a digest still tells who changed
# the notes after their rows are gone.
_AUTHORS = text(
    "INSERT INTO notes_author (room_id, user_id, last_ts) "
    "SELECT :room, author_id, max(ts) FROM event WHERE stream = :stream AND seq <= :seq "
    "AND ts < :keep AND type = 'notes.update' GROUP BY author_id "
    "ON CONFLICT (room_id, user_id) DO UPDATE SET last_ts = excluded.last_ts "
    "WHERE notes_author.last_ts < excluded.last_ts"
)


def update_of(event: StoredEvent) -> bytes:
    return base64.b64decode(event.data["u"], validate=True)


def event_data(update: bytes, conn_id: str) -> dict[str, str]:
    # ``c`` is the socket it came from, so that the sender is not sent its own update back.
    return {"u": base64.b64encode(update).decode(), "c": conn_id}


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get(TEXT, type=Text))


@dataclass(frozen=True, slots=True)
class Bad:
    """A stored row that did not load: ``kind`` "snapshot" or "update"."""

    kind: str
    seq: int
    why: str


@dataclass(slots=True)
class Loaded:
    """A document as stored: ``doc`` is ``base`` (the snapshot's state) plus ``updates``."""

    doc: Doc[Any]
    seq: int  # the last seq read
    base: bytes = b""
    updates: list[bytes] = field(default_factory=list)
    bad: list[Bad] = field(default_factory=list)


async def load(conn: AsyncConnection, room_id: str) -> Loaded:
    """The newest snapshot that applies, then every stored update that applies after it."""
    loaded = Loaded(Doc(), 0)
    snapshots = await conn.execute(
        select(SNAPSHOT.c.seq, SNAPSHOT.c.state)
        .where(SNAPSHOT.c.room_id == room_id)
        .order_by(SNAPSHOT.c.seq.desc())
    )
    for row in snapshots:
        failure = try_apply(loaded.doc, row.state)
        if failure is None:
            loaded.base, loaded.seq = row.state, row.seq
            break
        loaded.bad.append(Bad("snapshot", row.seq, describe(failure)))
        loaded.doc = Doc()
    replay = Replay(notes_stream(room_id), PAGE)
    while not replay.done:
        for event in await replay.next_in(conn, loaded.seq):
            loaded.seq = event.seq
            if event.type == UPDATE:
                add(loaded, event)
    return loaded


def add(loaded: Loaded, event: StoredEvent) -> None:
    try:
        data = update_of(event)
    except Exception as exc:  # not even base64: nothing was applied
        loaded.bad.append(Bad("update", event.seq, describe(exc)))
        return
    failure = try_apply(loaded.doc, data)
    if failure is None:
        loaded.updates.append(data)
        return
    loaded.bad.append(Bad("update", event.seq, describe(failure)))
    loaded.doc = rebuild(loaded.base, loaded.updates)


async def read(db: Database, room_id: str, metrics: Metrics | None = None) -> Loaded:
    """Load a room's notes; quarantine and report whatever did not load."""
    async with db.read() as conn:
        loaded = await load(conn, room_id)
    if loaded.bad:
        await quarantine(db, room_id, loaded.bad, metrics)
    return loaded


async def quarantine(
    db: Database, room_id: str, bad: list[Bad], metrics: Metrics | None = None
) -> None:
    """Mark bad update rows, so they are read once; report each row newly marked."""
    stream = notes_stream(room_id)
    for row in bad:
        if row.kind != "update":
            # A snapshot is written by the server from a document that loaded; one that
            # does not load is skipped (the updates after the previous one still apply).
            log.error("notes snapshot %s@%d does not load: %s", room_id, row.seq, row.why)
            continue
        async with db.write() as conn:
            marked = await conn.execute(
                update(EVENT)
                .where(EVENT.c.stream == stream, EVENT.c.seq == row.seq, EVENT.c.type == UPDATE)
                .values(type=QUARANTINED)
            )
        if marked.rowcount:
            log.error("quarantined notes update %s#%d: %s", stream, row.seq, row.why)
            if metrics is not None:
                metrics.inc("menteo_notes_quarantined_total")


async def compact(db: Database, room_id: str, state: bytes, seq: int, *, keep_after: str) -> None:
    """Store ``state`` (a document holding every update up to ``seq``) as a snapshot, and
    drop the updates it covers that are older than ``keep_after`` (an ISO time): a process
    that is briefly behind can still read them. Quarantined rows are kept."""
    async with db.write() as conn:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(SNAPSHOT).values(
                        room_id=room_id, seq=seq, state=state, created_at=now_iso()
                    )
                )
        except IntegrityError:
            return  # another process took this snapshot already
        await conn.execute(
            delete(SNAPSHOT).where(SNAPSHOT.c.room_id == room_id, SNAPSHOT.c.seq < seq)
        )
        params = {"room": room_id, "stream": notes_stream(room_id), "seq": seq, "keep": keep_after}
        await conn.execute(_AUTHORS, params)
        await conn.execute(
            delete(EVENT).where(
                EVENT.c.stream == notes_stream(room_id),
                EVENT.c.seq <= seq,
                EVENT.c.ts < keep_after,
                EVENT.c.type == UPDATE,
            )
        )
