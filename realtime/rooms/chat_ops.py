"""Chat changes on the room socket: edit and delete (``chat.send`` is in ``socket.py``).

Each is a durable room event appended through the writer; the rules that need the stored
message (its author, its age, whether it was deleted, whether a reply's target is a chat
message of this room) are the writer's (``persistence.chat.ChatReducer``), decided inside
the transaction under the room's lock, and a refusal comes back as an ``error`` frame.
"""

from __future__ import annotations

from typing import Any

from ..persistence.chat import DELETED, EDITED
from ..persistence.events import NewEvent
from ..protocol import chat_body, client_id, seq_field
from .connection import RoomConnection
from .parts import RoomParts


def writable(state: RoomParts, conn: RoomConnection, cid: str) -> None:
    """The one place chat changes ask whether the room takes them: an archived room
    refuses them with ``archived``, as it refuses ``chat.send``."""
    conn.writable(cid)


def handle_edit(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    cid = client_id(frame)
    data = {"target": seq_field(frame, "target"), "body": chat_body(frame, cid)}
    writable(state, conn, cid)
    item = NewEvent(conn.room.id, EDITED, conn.user_id, conn.principal.name, cid, data)
    conn.ack_when_stored(state.writer.append(item), cid, EDITED)


def handle_delete(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    cid = client_id(frame)
    data = {"target": seq_field(frame, "target"), "by": conn.user_id}
    writable(state, conn, cid)
    item = NewEvent(
        conn.room.id,
        DELETED,
        conn.user_id,
        conn.principal.name,
        cid,
        data,
        moderator=conn.role == "service",  # a service may delete any message
    )
    conn.ack_when_stored(state.writer.append(item), cid, DELETED)


CHAT_CHANGE_HANDLERS = {
    "chat.edit": handle_edit,
    "chat.delete": handle_delete,
}
