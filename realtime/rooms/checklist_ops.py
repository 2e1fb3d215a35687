"""Checklist operations on the room socket: validated here, resolved by the writer's reducer."""

from __future__ import annotations

from typing import Any

from ..checklist.model import MAX_DESCRIPTION, MAX_TITLE, ROADMAP_ID_PREFIX
from ..persistence.events import NewEvent
from ..protocol import (
    MAX_CLIENT_ID,
    ErrorCode,
    FrameError,
    bool_field,
    client_id,
    frame_id,
    has_nul,
    text_field,
)
from .connection import RoomConnection
from .parts import RoomParts


def _item_id(frame: dict[str, Any], name: str = "item_id") -> str:
    value = frame.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID or has_nul(value):
        raise FrameError(
            ErrorCode.INVALID,
            f"'{name}' must be a string of 1..{MAX_CLIENT_ID} characters, no NUL",
            frame_id(frame),
        )
    return value


def _target(frame: dict[str, Any]) -> tuple[str, str | None]:
    """The item an op is about, and the op's idempotency key.

    ``item_id`` names the item and ``id`` the operation. A frame without ``item_id`` names
    the item by ``id``; such an operation is not deduplicated (its id is the item's).
    """
    op_id = client_id(frame)
    if "item_id" in frame:
        return _item_id(frame), op_id
    return op_id, None


def _after(frame: dict[str, Any], name: str = "after") -> str | None:
    if frame.get(name) is None:
        return None
    return _item_id(frame, name)


def _normalized(frame: dict[str, Any]) -> dict[str, Any]:
    """Accept the spellings clients reach for: a nested ``item`` object for an add, and
    ``after_id`` for ``after``."""
    item = frame.get("item")
    if frame.get("type") == "checklist.add" and isinstance(item, dict):
        frame = {**{k: v for k, v in item.items() if k != "id"}, **frame}
        if "id" in item and "item_id" not in frame:
            frame["item_id"] = item["id"]
    if "after_id" in frame and "after" not in frame:
        frame = {**frame, "after": frame["after_id"]}
    return frame


def _submit(
    state: RoomParts,
    conn: RoomConnection,
    op: str,
    op_id: str,
    key: str | None,
    data: dict[str, Any],
) -> None:
    conn.writable(op_id)
    event_type = "checklist." + op
    # Who may do it is the reducer's to decide, against the members at commit time.
    item = NewEvent(
        conn.room.id,
        event_type,
        conn.user_id,
        conn.principal.name,
        key,
        data,
        service=conn.principal.is_service,
    )
    conn.ack_when_stored(state.writer.append(item), op_id, event_type)


def handle_add(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    frame = _normalized(frame)
    op_id = client_id(frame)
    item_id = _item_id(frame) if "item_id" in frame else op_id
    if item_id.startswith(ROADMAP_ID_PREFIX):  # so no member can claim a step beforehand
        raise FrameError(
            ErrorCode.INVALID, f"item ids starting {ROADMAP_ID_PREFIX!r} are reserved", op_id
        )
    data: dict[str, Any] = {"item_id": item_id, "title": text_field(frame, "title", MAX_TITLE)}
    if "description" in frame:
        data["description"] = text_field(frame, "description", MAX_DESCRIPTION, min_len=0)
    if "after" in frame:
        data["after"] = _after(frame)
    elif "position" in frame:
        position = frame["position"]
        if position is None or isinstance(position, str):  # an item id, like ``after``
            data["after"] = _after(frame, "position")
        elif isinstance(position, int) and not isinstance(position, bool) and position >= 0:
            data["position"] = position  # an index into the current list
        else:
            raise FrameError(
                ErrorCode.INVALID, "'position' is an index >= 0, an item id or null", op_id
            )
    _submit(state, conn, "add", op_id, op_id, data)


def handle_toggle(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    item_id, key = _target(frame)
    done = bool_field(frame, "done")
    _submit(state, conn, "toggle", client_id(frame), key, {"item_id": item_id, "done": done})


def handle_rename(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    item_id, key = _target(frame)
    title = text_field(frame, "title", MAX_TITLE)
    _submit(state, conn, "rename", client_id(frame), key, {"item_id": item_id, "title": title})


def handle_move(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    frame = _normalized(frame)
    item_id, key = _target(frame)
    if "after" not in frame:
        raise FrameError(ErrorCode.INVALID, "'after' is required (null for first)", frame_id(frame))
    data = {"item_id": item_id, "after": _after(frame)}
    _submit(state, conn, "move", client_id(frame), key, data)


def handle_remove(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    item_id, key = _target(frame)
    _submit(state, conn, "remove", client_id(frame), key, {"item_id": item_id})


def handle_verify(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    item_id, key = _target(frame)
    verified = bool_field(frame, "verified") if "verified" in frame else True
    data: dict[str, Any] = {"item_id": item_id, "verified": verified}
    if verified and "title" in frame:  # the words the mentor saw: refused if they changed
        data["title"] = text_field(frame, "title", MAX_TITLE)
    _submit(state, conn, "verify", client_id(frame), key, data)


CHECKLIST_HANDLERS = {
    "checklist.add": handle_add,
    "checklist.toggle": handle_toggle,
    "checklist.rename": handle_rename,
    "checklist.move": handle_move,
    "checklist.remove": handle_remove,
    "checklist.verify": handle_verify,
}
