"""The room welcome's read state: every member's marker, your unread count and digest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from .digest import Windows, digest_of
from .queries import UNREAD_CAP, checklist_changed_sync, markers_sync, unread_sync


def welcome_reads_sync(
    conn: Connection,
    room_id: str,
    members: Sequence[str],
    user_id: str | None,
    last: int,
    max_events: int,
    windows: Windows,
    markers: dict[str, int] | None = None,
) -> tuple[dict[str, int], int, dict[str, Any] | None]:
    """``read`` (each member's marker, 0 when none), ``unread`` (messages by others after
    yours, up to ``last``) and ``digest`` (from your marker, when something is unread or
    someone else changed the checklist since; else None). ``user_id`` None: a service,
    which has no marker. A reader who has read everything costs one statement; one who has
    not, the window of events since their marker (read once for every reader: ``windows``).
    ``markers``: the room's, when the caller read them already (a batch of welcomes)."""
    if markers is None:
        markers = markers_sync(conn, room_id)
    read = {member: markers.get(member, 0) for member in members}
    mine = markers.get(user_id, 0) if user_id is not None else last
    if user_id is None or mine >= last:
        return read, 0, None
    window = windows.get(conn, room_id, mine, last, max_events)
    if window.truncated:  # the window does not hold them all: count from the index
        unread = unread_sync(conn, room_id, user_id, mine, last)
        changed = window.checklist_by_others(user_id) or checklist_changed_sync(
            conn, room_id, user_id, mine
        )
    else:
        unread = min(UNREAD_CAP, window.messages_by_others(user_id))
        changed = window.checklist_by_others(user_id)
    digest = digest_of(conn, window, user_id, max_events) if unread or changed else None
    return read, unread, digest
