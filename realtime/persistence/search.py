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
from .search_sqlite import SaSql


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
    await catch_up(db, streams)
    if db.is_sqlite:
        match = fts5_query(words)

        def read(conn: Connection) -> list[Hit]:
            return search_sqlite.find(SaSql(conn), streams, match, before, limit + 1)

        hits = await db.run(read, snapshot=True)
    else:
        async with db.pg_read() as conn:
            hits = await search_pg.find(
                conn, streams, tsquery(words), before, limit + 1, across=across
            )
    hits.sort(key=lambda h: (h.ts, h.seq) if across else (h.seq,), reverse=True)
    page = hits[:limit]
    page.sort(key=lambda h: (h.score, h.ts, h.seq), reverse=True)
    return page, len(hits) > limit


async def catch_up(db: Database, streams: Sequence[str]) -> None:
    """Index what the streams appended since they were last indexed (nothing to write,
    usually: one read)."""
    if db.is_sqlite:

        def late(conn: Connection) -> list[str]:
            return search_sqlite.behind(SaSql(conn), streams)

        behind = await db.run(late)
        more = bool(behind)
        while more:
            more = await db.write_sqlite(search_sqlite.catch_up, behind)
        return
    async with db.pg_read() as conn:
        behind = await search_pg.behind(conn, streams)
    more = bool(behind)
    while more:
        async with db.pg_write() as conn:
            more = await search_pg.catch_up(conn, behind)
