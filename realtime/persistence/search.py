"""Full-text search over rooms' chat: bring the rooms' index up to date, then read a page.

A page holds the newest ``limit`` matching messages (older than ``before`` in one room;
across rooms, by time), best match first within the page (FTS5's bm25 on SQLite,
``ts_rank`` on PostgreSQL; ties: newest first). ``has_more``: older matches exist.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from . import search_pg, search_sqlite
from .database import Database
from .search_base import Hit, fts5_query, tsquery


async def search(
    db: Database,
    streams: Sequence[str],
    words: list[str],
    *,
    before: int | None,
    limit: int,
    across: bool,
) -> tuple[list[Hit], bool]:
    """A page of ``streams``' messages matching every word (the last as a prefix)."""
    if db.is_sqlite:
        hits = await _find_sqlite(db, streams, fts5_query(words), before, limit + 1)
    else:
        hits = await _find_pg(db, streams, tsquery(words), before, limit + 1, across)
    hits.sort(key=lambda h: (h.ts, h.seq) if across else (h.seq,), reverse=True)
    page = hits[:limit]
    page.sort(key=lambda h: (h.score, h.ts, h.seq), reverse=True)
    return page, len(hits) > limit


async def _find_sqlite(
    db: Database, streams: Sequence[str], match: str, before: int | None, limit: int
) -> list[Hit]:
    """One read when the index is up to date (the usual case); else index, read again."""

    def read(conn: Connection, check: bool) -> tuple[list[str], list[Hit]]:
        sql = search_sqlite.reader(conn)
        behind = search_sqlite.behind(sql, streams) if check else []
        return behind, [] if behind else search_sqlite.find(sql, streams, match, before, limit)

    behind, hits = await db.run(read, True, snapshot=True)
    if behind:
        await _catch_up_sqlite(db, behind)
        behind, hits = await db.run(read, False, snapshot=True)
    return hits


async def _find_pg(
    db: Database,
    streams: Sequence[str],
    query: str,
    before: int | None,
    limit: int,
    across: bool,
) -> list[Hit]:
    """One connection when the index is up to date (the usual case); else index first."""
    async with db.pg_read() as conn:
        behind = await search_pg.behind(conn, streams)
        if not behind:
            return await search_pg.find(conn, streams, query, before, limit, across=across)
    await _catch_up_pg(db, behind)
    async with db.pg_read() as conn:
        return await search_pg.find(conn, streams, query, before, limit, across=across)


async def room_access(db: Database, room_id: str, user_id: str | None) -> bool | None:
    """None: no such room; else whether ``user_id`` is a member (None: a service, always).
    One read on the driver's own connection: searches are many and small."""
    if db.is_sqlite:

        def read(conn: Connection) -> bool | None:
            return search_sqlite.room_access(search_sqlite.reader(conn), room_id, user_id)

        return await db.run(read)
    async with db.pg_read() as conn:
        return await search_pg.room_access(conn, room_id, user_id)


async def member_rooms(db: Database, user_id: str) -> list[str]:
    """The rooms ``user_id`` is a member of."""
    if db.is_sqlite:

        def read(conn: Connection) -> list[str]:
            return search_sqlite.member_rooms(search_sqlite.reader(conn), user_id)

        return await db.run(read)
    async with db.pg_read() as conn:
        return await search_pg.member_rooms(conn, user_id)


async def catch_up(db: Database, streams: Sequence[str]) -> None:
    """Index what the streams appended since they were last indexed (nothing to write,
    usually: one read)."""
    if db.is_sqlite:

        def late(conn: Connection) -> list[str]:
            return search_sqlite.behind(search_sqlite.reader(conn), streams)

        await _catch_up_sqlite(db, await db.run(late))
        return
    async with db.pg_read() as conn:
        behind = await search_pg.behind(conn, streams)
    await _catch_up_pg(db, behind)


async def _catch_up_pg(db: Database, behind: list[str]) -> None:
    more = bool(behind)
    while more:
        async with db.pg_write() as conn:
            more = await search_pg.catch_up(conn, behind)


async def _catch_up_sqlite(db: Database, behind: list[str]) -> None:
    more = bool(behind)
    while more:
        more = await db.write_sqlite(search_sqlite.catch_up, behind)
