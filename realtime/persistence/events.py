"""Appending to and reading from streams. The database is the sequencer and the truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from sqlalchemy import Connection, and_, bindparam, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import Event, Stream
from .sql import Sql

if TYPE_CHECKING:
    from .chat import ChatReducer, ChatState

EVENT = Event.__table__  # type: ignore[attr-defined]
STREAM = Stream.__table__  # type: ignore[attr-defined]


# A chat message's ``kind``: a member's ("user", never stored: an event without a kind is one)
# or the platform backend's ("system", stored in the event's data).
USER_KIND = "user"
SYSTEM_KIND = "system"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class StoredEvent:
    """An event as stored: ``seq`` is its place in its stream."""

    stream: str
    seq: int
    type: str
    author_id: str
    author_name: str
    client_id: str | None
    data: dict[str, Any]
    ts: str

    def frame(self) -> dict[str, Any]:
        """The wire frame every member receives (the same for every codec)."""
        frame: dict[str, Any] = {
            "type": self.type,
            "seq": self.seq,
            "id": self.client_id,
            "author": {"user_id": self.author_id, "name": self.author_name},
        }
        if self.type == "chat.message":  # a member's, unless stored as the backend's "system"
            frame["kind"] = USER_KIND
        frame.update(self.data)
        frame["ts"] = self.ts
        return frame


@dataclass(slots=True)
class NewEvent:
    stream: str
    type: str
    author_id: str
    author_name: str
    client_id: str | None
    data: dict[str, Any] = field(default_factory=dict)
    # The author holds a service token (never stored): a reducer's role check, for an
    # author who is not a member of the room.
    service: bool = False
    # Not stored: the author may act on others' events (a service deleting a chat message).
    moderator: bool = False


@dataclass(slots=True)
class AppendResult:
    event: StoredEvent
    created: bool  # False: the client id was already stored; this is the original


class UnknownStream(LookupError):
    pass


class Rejected(Exception):
    """A reducer refused an event: nothing is stored and no seq is used."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Prefix = str | tuple[str, ...]


class Reducer(Protocol):
    """Keeps a materialized state beside a kind of event (e.g. ``checklist.*``).

    It runs inside the appending transaction, under the stream lock: ``load`` reads what
    the batch's events of this kind need, ``reduce`` checks an event against the state,
    returns the data to store (or raises ``Rejected``) and updates the state (``seq`` is the
    seq the event gets if accepted); ``save`` writes the changed state in the same
    transaction.
    """

    @property
    def prefix(self) -> Prefix:
        """The event types it keeps (``str.startswith``); its state's key in a batch."""
        ...

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> Any: ...

    def reduce(self, state: Any, item: NewEvent, seq: int, ts: str) -> dict[str, Any]: ...

    async def save(self, conn: AsyncConnection, state: Any) -> None: ...


class Appender(Protocol):
    """A fast path for batches no reducer touches: the same transaction as ``append_batch``
    without SQLAlchemy (``sqlite_append``, ``pg_append``)."""

    async def append(
        self, items: Sequence[NewEvent], chat: ChatReducer | None = None
    ) -> list[AppendResult | Exception]: ...

    async def close(self) -> None: ...


def row_to_event(row: Any) -> StoredEvent:
    return StoredEvent(
        stream=row.stream,
        seq=row.seq,
        type=row.type,
        author_id=row.author_id,
        author_name=row.author_name,
        client_id=row.client_id,
        data=orjson.loads(row.data),
        ts=row.ts,
    )


def plan_batch(
    items: Sequence[NewEvent],
    last: dict[str, int],
    existing: dict[tuple[str, str, str], StoredEvent],
    ts: str,
    reducers: Sequence[Reducer] = (),
    states: dict[Prefix, Any] | None = None,
) -> tuple[list[AppendResult | Exception], list[dict[str, Any]]]:
    """Decide each item's fate: a new event with the next seq of its stream, the stored
    original of a repeated client id, or a refusal. ``last`` and ``existing`` are what the
    database holds under the lock; both are updated as the batch is planned."""
    results: list[AppendResult | Exception] = []
    rows_out: list[dict[str, Any]] = []
    for item in items:
        if item.stream not in last:
            results.append(UnknownStream(item.stream))
            continue
        key = (item.stream, item.author_id, item.client_id or "")
        if item.client_id is not None and key in existing:
            results.append(AppendResult(existing[key], created=False))
            continue
        data = item.data
        reducer = next((r for r in reducers if item.type.startswith(r.prefix)), None)
        if reducer is not None:
            try:
                data = reducer.reduce(
                    (states or {})[reducer.prefix], item, last[item.stream] + 1, ts
                )
            except Rejected as exc:
                results.append(exc)
                continue
        last[item.stream] += 1
        stored = StoredEvent(
            item.stream,
            last[item.stream],
            item.type,
            item.author_id,
            item.author_name,
            item.client_id,
            data,
            ts,
        )
        if item.client_id is not None:
            existing[key] = stored
        rows_out.append(
            {
                "stream": stored.stream,
                "seq": stored.seq,
                "type": stored.type,
                "author_id": stored.author_id,
                "author_name": stored.author_name,
                "client_id": stored.client_id,
                "data": orjson.dumps(stored.data).decode(),
                "ts": ts,
            }
        )
        results.append(AppendResult(stored, created=True))
    return results, rows_out


def _lock_and_dedupe_sync(
    conn: Connection, items: Sequence[NewEvent], lock_rows: bool
) -> tuple[dict[str, int], dict[tuple[str, str, str], StoredEvent]]:
    """The streams' last seqs (rows locked) and the events already stored under the batch's
    client ids."""
    streams = sorted({item.stream for item in items})
    query = select(STREAM.c.id, STREAM.c.last_seq).where(STREAM.c.id.in_(streams))
    if lock_rows:
        query = query.order_by(STREAM.c.id).with_for_update()
    last = {row.id: row.last_seq for row in conn.execute(query)}

    keyed = [i for i in items if i.client_id is not None]
    existing: dict[tuple[str, str, str], StoredEvent] = {}
    if keyed:
        keys = {(i.stream, i.author_id, i.client_id) for i in keyed}
        if conn.dialect.name == "sqlite":  # it scans for a row-value IN; each OR term seeks
            match = or_(
                *(
                    and_(EVENT.c.stream == s, EVENT.c.author_id == a, EVENT.c.client_id == c)
                    for s, a, c in sorted(keys)
                )
            )
        else:
            match = tuple_(EVENT.c.stream, EVENT.c.author_id, EVENT.c.client_id).in_(sorted(keys))
        for row in conn.execute(select(EVENT).where(match)):
            existing[(row.stream, row.author_id, row.client_id)] = row_to_event(row)
    return last, existing


def _write_events_sync(
    conn: Connection, rows_out: list[dict[str, Any]], last: dict[str, int]
) -> None:
    if rows_out:
        conn.execute(insert(EVENT), rows_out)
        touched = {r["stream"] for r in rows_out}
        conn.execute(
            update(STREAM).where(STREAM.c.id == bindparam("sid")).values(last_seq=bindparam("seq")),
            [{"sid": s, "seq": last[s]} for s in sorted(touched)],
        )


def _reducers_for(
    reducers: Sequence[Reducer], items: Sequence[NewEvent]
) -> list[tuple[Reducer, list[NewEvent]]]:
    out = []
    for r in reducers:
        mine = [i for i in items if i.type.startswith(r.prefix)]
        if mine:
            out.append((r, mine))
    return out


async def append_batch(
    conn: AsyncConnection,
    items: Sequence[NewEvent],
    *,
    lock_rows: bool,
    reducers: Sequence[Reducer] = (),
    chat: ChatReducer | None = None,
) -> list[AppendResult | Exception]:
    """Store ``items`` in one transaction (the caller's), assigning gap-free seqs per stream.

    The stream rows are locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write
    transaction already excludes other writers), so appends from several processes to one
    stream serialize and no seq is skipped or reused. A client id already stored, or seen
    earlier in the same batch, yields the original event with ``created=False``. ``chat``
    (``chat.ChatReducer``): the rules of chat edits, deletes and replies, whose writes come
    after the events (a change may name a message of the same batch).
    """
    last, existing = await conn.run_sync(_lock_and_dedupe_sync, items, lock_rows)
    ts = now_iso()
    used = _reducers_for(reducers, items)
    states = {r.prefix: await r.load(conn, mine) for r, mine in used}
    changes = await _chat_load(conn, items, chat)
    if chat is not None and changes is not None:
        states[chat.prefix] = changes
        reducers = [*reducers, chat]
    results, rows_out = plan_batch(items, last, existing, ts, reducers, states)
    for reducer, _ in used:
        await reducer.save(conn, states[reducer.prefix])
    await conn.run_sync(_write_events_sync, rows_out, last)
    if chat is not None and changes is not None:
        await chat.save(conn, changes)  # after the events: a change may name one of them
    return results


async def _chat_load(
    conn: AsyncConnection, items: Sequence[NewEvent], chat: ChatReducer | None
) -> ChatState | None:
    """The chat rules' state for this batch, or None when it holds no change or reply."""
    from .chat import needs_chat  # it builds on this module

    if chat is None or not needs_chat(items):
        return None
    return await chat.load(conn, list(items))


def replay_sync(
    conn: Connection,
    stream: str,
    after: int,
    limit: int,
    types: Sequence[str] | None = None,
) -> list[StoredEvent]:
    """Events with seq > ``after``, oldest first."""
    query = select(EVENT).where(EVENT.c.stream == stream, EVENT.c.seq > after)
    if types is not None:
        query = query.where(EVENT.c.type.in_(types))
    rows = conn.execute(query.order_by(EVENT.c.seq).limit(limit))
    return [row_to_event(r) for r in rows]


_PAGE_OF_TYPE = Sql(
    "SELECT seq, type, author_id, author_name, client_id, data, ts FROM event "
    "WHERE stream = :stream AND type = :type AND seq < :before ORDER BY seq DESC LIMIT :n"
)


def page_before_sync(
    conn: Connection, stream: str, types: Sequence[str], before: int | None, limit: int
) -> tuple[list[StoredEvent], bool]:
    """The newest ``limit`` events of ``types`` before ``before``, oldest first; has_more."""
    if len(types) == 1 and before is not None:  # a welcome's history: prepared once
        rows = _PAGE_OF_TYPE.rows(conn, stream=stream, type=types[0], before=before, n=limit + 1)
        events = [
            StoredEvent(stream, seq, type_, author, name, cid, orjson.loads(data), ts)
            for seq, type_, author, name, cid, data, ts in rows
        ]
        return events[:limit][::-1], len(events) > limit
    query = select(EVENT).where(EVENT.c.stream == stream, EVENT.c.type.in_(types))
    if before is not None:
        query = query.where(EVENT.c.seq < before)
    rows = list(conn.execute(query.order_by(EVENT.c.seq.desc()).limit(limit + 1)))
    has_more = len(rows) > limit
    return [row_to_event(r) for r in reversed(rows[:limit])], has_more


def last_seqs_sync(conn: Connection, streams: Sequence[str]) -> dict[str, int]:
    rows = conn.execute(select(STREAM.c.id, STREAM.c.last_seq).where(STREAM.c.id.in_(streams)))
    return {r.id: r.last_seq for r in rows}


_LAST_SEQ = Sql("SELECT last_seq FROM stream WHERE id = :stream")


def last_seq_sync(conn: Connection, stream: str) -> int:
    """One stream's last seq (0: none yet), prepared once: a join reads it up to three
    times (its room's watch, the hub's first read, the welcome)."""
    return int(_LAST_SEQ.scalar(conn, stream=stream) or 0)


def seqs_sync(conn: Connection, streams: Sequence[str]) -> dict[str, int]:
    """The streams' last seqs (a stream with none yet: absent), in one statement; a lone
    stream's is the prepared one (a batch of one is the common case on a quiet server)."""
    if len(streams) == 1:
        return {streams[0]: last_seq_sync(conn, streams[0])}
    return last_seqs_sync(conn, streams)


# The same reads for async callers. Written once, as sync functions, so that a caller on the
# hot path can run several of them in one trip to SQLite's thread (``Database.run``).
async def replay(
    conn: AsyncConnection,
    stream: str,
    after: int,
    limit: int,
    *,
    types: Sequence[str] | None = None,
) -> list[StoredEvent]:
    return await conn.run_sync(replay_sync, stream, after, limit, types)


async def page_before(
    conn: AsyncConnection, stream: str, types: Sequence[str], before: int | None, limit: int
) -> tuple[list[StoredEvent], bool]:
    return await conn.run_sync(page_before_sync, stream, types, before, limit)


async def last_seqs(conn: AsyncConnection, streams: Sequence[str]) -> dict[str, int]:
    return await conn.run_sync(last_seqs_sync, streams)


async def create_stream(conn: AsyncConnection, stream: str) -> None:
    await conn.execute(insert(STREAM).values(id=stream, last_seq=0, created_at=now_iso()))
