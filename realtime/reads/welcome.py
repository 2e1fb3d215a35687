"""The room welcome's read state: every member's marker, your unread count and digest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from .digest import digest_sync
from .queries import checklist_changed_sync, markers_sync, unread_sync


def welcome_reads_sync(
    conn: Connection,
    room_id: str,
    members: Sequence[str],
    user_id: str | None,
    last: int,
    max_events: int,
) -> tuple[dict[str, int], int, dict[str, Any] | None]:
    """``read`` (each member's marker, 0 when none), ``unread`` (messages by others after
    yours, up to ``last``) and ``digest`` (from your marker, when something is unread or
    someone else changed the checklist since; else None). ``user_id`` None: a service,
    which has no marker."""
    markers = markers_sync(conn, room_id)
    read = {member: markers.get(member, 0) for member in members}
    if user_id is None:
        return read, 0, None
    mine = markers.get(user_id, 0)
    unread = unread_sync(conn, room_id, user_id, mine, last)
    digest = None
    if unread > 0 or checklist_changed_sync(conn, room_id, user_id, mine):
        digest = digest_sync(conn, room_id, user_id, mine, max_events)
    return read, unread, digest
