"""Chat search on PostgreSQL: ``tsvector`` rows with a GIN index, indexed when searched.

``chat_fts`` holds ``to_tsvector('english', body)`` per message (key: stream, seq), so a
room's search is either the GIN index or the room's rows newest first with a cheap ``@@``
on each, whichever the planner finds cheaper. As on SQLite (``search_sqlite``), appending a
chat message writes nothing here: a search first brings its rooms' rows up to the room's
seq (``catch_up``, under the stream row lock the appenders take, so it serializes with
them and with edits and deletes), then reads. Edits and deletes of an indexed message
change its row in their own transaction (``chat_pg.save``).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from .search_base import CHUNK, Hit

CONFIG = "english"
HEADLINE = "StartSel=«, StopSel=», MaxWords=24, MinWords=12, MaxFragments=1"

BEHIND = (
    "SELECT s.id FROM stream s LEFT JOIN chat_index c ON c.stream = s.id "
    "WHERE s.id = ANY($1::text[]) AND coalesce(c.upto, 0) < s.last_seq"
)
MARK = (
    "INSERT INTO chat_index (stream, upto) SELECT s, 0 FROM unnest($1::text[]) AS s "
    "ON CONFLICT (stream) DO NOTHING"
)
UPTO = "SELECT stream, upto FROM chat_index WHERE stream = ANY($1::text[])"
INDEX = (
    "INSERT INTO chat_fts (stream, seq, tsv) "
    f"SELECT stream, seq, to_tsvector('{CONFIG}', data::jsonb ->> 'body') FROM event "
    "WHERE stream = $1 AND type = 'chat.message' AND seq > $2 AND seq <= $3 "
    "AND NOT (data::jsonb ? 'deleted')"
)
ADVANCE = "UPDATE chat_index SET upto = $2 WHERE stream = $1"

# The newest matches of each room (LATERAL: one index walk per room), then the newest
# ``$4`` of those by ``$5`` (seq for one room, ts across rooms), their headlines last.
_FIND = (
    f"WITH q AS (SELECT to_tsquery('{CONFIG}', $2) AS q), "
    "hits AS (SELECT r.stream, h.seq, h.rank FROM unnest($1::text[]) AS r(stream) "
    "CROSS JOIN LATERAL (SELECT f.seq, ts_rank(f.tsv, q.q) AS rank FROM chat_fts f, q "
    "WHERE f.stream = r.stream AND f.tsv @@ q.q AND f.seq < $3 "
    "ORDER BY f.seq DESC LIMIT $4) AS h), "
    "top AS (SELECT e.stream, e.seq, e.client_id, e.author_id, e.author_name, e.data, e.ts, "
    "hits.rank FROM hits JOIN event e ON e.stream = hits.stream AND e.seq = hits.seq "
    "ORDER BY {order} LIMIT $4) "
    "SELECT top.*, "
    f"ts_headline('{CONFIG}', top.data::jsonb ->> 'body', q.q, '{HEADLINE}') FROM top, q"
)
FIND_ROOM = _FIND.replace("{order}", "e.seq DESC")
FIND_ACROSS = _FIND.replace("{order}", "e.ts DESC, e.seq DESC")


ACCESS = (
    "SELECT EXISTS (SELECT 1 FROM room WHERE id = $1), "
    "EXISTS (SELECT 1 FROM member WHERE room_id = $1 AND user_id = $2)"
)
MEMBER_ROOMS = "SELECT room_id FROM member WHERE user_id = $1"


async def room_access(conn: asyncpg.Connection, room_id: str, user_id: str | None) -> bool | None:
    exists, member = await conn.fetchrow(ACCESS, room_id, user_id or "")
    if not exists:
        return None
    return True if user_id is None else bool(member)


async def member_rooms(conn: asyncpg.Connection, user_id: str) -> list[str]:
    return sorted(r[0] for r in await conn.fetch(MEMBER_ROOMS, user_id))


async def behind(conn: asyncpg.Connection, streams: Sequence[str]) -> list[str]:
    return sorted(r[0] for r in await conn.fetch(BEHIND, list(streams)))


async def catch_up(conn: asyncpg.Connection, streams: Sequence[str]) -> bool:
    """Index up to ``CHUNK`` seqs of each stream, inside the caller's transaction; True
    while some stream is still behind. The stream rows are locked first, in id order."""
    from .pg_append import LOCK  # the appenders' lock (pg_append builds on this module)

    ordered = sorted(streams)
    last = {r[0]: r[1] for r in await conn.fetch(LOCK, ordered)}
    await conn.execute(MARK, ordered)
    upto = {r[0]: r[1] for r in await conn.fetch(UPTO, ordered)}
    more = False
    for stream in ordered:
        top = min(last.get(stream, 0), upto[stream] + CHUNK)
        if top <= upto[stream]:
            continue
        await conn.execute(INDEX, stream, upto[stream], top)
        await conn.execute(ADVANCE, stream, top)
        more = more or top < last[stream]
    return more


async def find(
    conn: asyncpg.Connection,
    streams: Sequence[str],
    tsquery: str,
    before: int | None,
    limit: int,
    *,
    across: bool,
) -> list[Hit]:
    """The newest ``limit`` matches (of one room by seq, or across rooms by ts)."""
    rows = await conn.fetch(
        FIND_ACROSS if across else FIND_ROOM,
        list(streams),
        tsquery,
        before if before is not None else 2**62,
        limit,
    )
    out = []
    for stream, seq, client_id, author_id, author_name, data, ts, rank, snippet in rows:
        message = orjson.loads(data)
        if message.get("deleted"):
            continue
        out.append(Hit(stream, seq, client_id, author_id, author_name, message, ts, snippet, rank))
    return out
