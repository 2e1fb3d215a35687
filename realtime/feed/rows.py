"""The feed's plain rows, written by REST outside the writer: communities, threads,
reactions (with their pending marks) and follows. Posts and comments are not here: they are
events, written by the reducer."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.events import now_iso
from .model import ThreadRecord, new_id
from .tables import COMMUNITY_T, FOLLOW_T, PENDING_T, REACTION_T, THREAD_T


async def create_community(conn: AsyncConnection, name: str) -> dict[str, Any]:
    row = {"id": new_id(), "name": name, "created_at": now_iso()}
    await conn.execute(insert(COMMUNITY_T).values(**row))
    return row


async def create_thread(
    conn: AsyncConnection, community_id: str, owner_id: str, owner_name: str, title: str
) -> ThreadRecord:
    thread = ThreadRecord(new_id(), community_id, owner_id, owner_name, title, now_iso())
    await conn.execute(
        insert(THREAD_T).values(
            id=thread.id,
            community_id=community_id,
            owner_id=owner_id,
            owner_name=owner_name,
            title=title,
            created_at=thread.created_at,
        )
    )
    return thread


async def set_reaction(
    conn: AsyncConnection, post_id: str, user_id: str, kind: str, active: bool
) -> bool:
    """Add or remove a reaction; True if that changed anything."""
    key = and_(
        REACTION_T.c.post_id == post_id, REACTION_T.c.user_id == user_id, REACTION_T.c.kind == kind
    )
    row = {"post_id": post_id, "user_id": user_id, "kind": kind}
    changed = await _toggle(conn, REACTION_T, key, row, active)
    if changed:  # a new mark, replacing any older one (an upsert: reactions race)
        mark = {"post_id": post_id, "mark": new_id(), "marked_at": time.time()}
        dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(PENDING_T).values(**mark)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[PENDING_T.c.post_id],
                set_={"mark": stmt.excluded.mark, "marked_at": stmt.excluded.marked_at},
            )
        )
    return changed


async def set_follow(
    conn: AsyncConnection, user_id: str, kind: str, target_id: str, active: bool
) -> bool:
    key = and_(
        FOLLOW_T.c.user_id == user_id, FOLLOW_T.c.kind == kind, FOLLOW_T.c.target_id == target_id
    )
    row = {"user_id": user_id, "kind": kind, "target_id": target_id}
    return await _toggle(conn, FOLLOW_T, key, row, active)


async def lock_follows(conn: AsyncConnection, user_id: str) -> None:
    """Serialize one user's follow changes until the transaction ends, so the cap is
    counted exactly (SQLite's writes are serialized already)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("follows:" + user_id))))


async def _toggle(
    conn: AsyncConnection, table: Any, key: ColumnElement[bool], row: dict[str, str], active: bool
) -> bool:
    if not active:
        result = await conn.execute(table.delete().where(key))
        return bool(result.rowcount)
    # INSERT ... ON CONFLICT DO NOTHING: a concurrent twin request changes nothing twice.
    if conn.dialect.name == "postgresql":
        stmt: Any = postgresql.insert(table).values(**row).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).values(**row).on_conflict_do_nothing()
    result = await conn.execute(stmt)
    return bool(result.rowcount)
