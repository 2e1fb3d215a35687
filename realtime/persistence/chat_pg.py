"""Chat changes on PostgreSQL (asyncpg), inside the appending transaction, after the
batch's events are inserted: the same reads and writes as ``chat_sqlite``, with
``chat_fts`` rows instead of FTS5 shards. The stream rows are locked already, so the
index mark read here cannot move under the batch."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from .chat import ERASED_EDIT, ChatState, Message, changed_streams, wanted
from .events import NewEvent
from .search_pg import CONFIG, UPTO

LOAD = (
    "SELECT e.stream, e.seq, e.type, e.author_id, e.data, e.ts "
    "FROM unnest($1::text[], $2::bigint[]) AS k(s, q) "
    "JOIN event e ON e.stream = k.s AND e.seq = k.q"
)
REWRITE = (
    "UPDATE event SET data = u.d FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(s, q, d) "
    "WHERE event.stream = u.s AND event.seq = u.q"
)
ERASE_EDITS = (
    "UPDATE event SET data = $3 WHERE stream = $1 AND type = 'chat.edited' AND seq > $2 "
    "AND (data::jsonb ->> 'target')::bigint = $2"
)
UNINDEX = (
    "DELETE FROM chat_fts f USING unnest($1::text[], $2::bigint[]) AS u(s, q) "
    "WHERE f.stream = u.s AND f.seq = u.q"
)
REINDEX = (
    f"UPDATE chat_fts f SET tsv = to_tsvector('{CONFIG}', u.b) "
    "FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(s, q, b) "
    "WHERE f.stream = u.s AND f.seq = u.q"
)


async def load(conn: asyncpg.Connection, items: Sequence[NewEvent]) -> ChatState:
    state = ChatState()
    keys = wanted(items)
    upto = {r[0]: r[1] for r in await conn.fetch(UPTO, changed_streams(items))}
    rows = await conn.fetch(LOAD, [k[0] for k in keys], [k[1] for k in keys])
    for stream, seq, type_, author_id, data, ts in rows:
        state.found[(stream, seq)] = Message(
            stream,
            seq,
            type_,
            author_id,
            orjson.loads(data),
            ts,
            indexed=seq <= upto.get(stream, 0),
        )
    return state


async def save(conn: asyncpg.Connection, state: ChatState) -> None:
    changed = state.changed
    if changed:
        await conn.execute(
            REWRITE,
            [m.stream for m in changed],
            [m.seq for m in changed],
            [orjson.dumps(m.data).decode() for m in changed],
        )
    for message in state.deleted:
        erased = orjson.dumps({"target": message.seq, **ERASED_EDIT}).decode()
        await conn.execute(ERASE_EDITS, message.stream, message.seq, erased)
    gone = [m for m in changed if m.indexed and m.data.get("deleted")]
    if gone:
        await conn.execute(UNINDEX, [m.stream for m in gone], [m.seq for m in gone])
    kept = [m for m in changed if m.indexed and not m.data.get("deleted")]
    if kept:
        await conn.execute(
            REINDEX, [m.stream for m in kept], [m.seq for m in kept], [m.data["body"] for m in kept]
        )
