"""Chat messages that change: edits, deletes that erase, replies.

A ``chat.message`` row holds the message as it is now: an edit rewrites its ``body`` and
adds ``edited_at``; a delete erases it to ``{"body": "", "deleted": true}`` and erases the
body of every ``chat.edited`` event of it, in the transaction that stores the
``chat.deleted`` event. History, pages and replay therefore read the current state, and
replay still carries the change events after the message, so a client applying events in
order converges.

``ChatReducer`` decides (pure Python, the same on every backend and append path): a target
must be a chat message of the stream, an edit must come from its author within the edit
window, a delete from its author or a moderator (a service); a reply must name a chat
message of the stream. The storage of a decided batch is ``chat_sqlite`` or ``chat_pg``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ..protocol import ErrorCode
from .events import NewEvent, Rejected

MESSAGE = "chat.message"
EDITED = "chat.edited"
DELETED = "chat.deleted"
CHANGE_TYPES = (EDITED, DELETED)
# What a deleted message keeps besides its seq, id, author and ts: structure, never text.
# (A field added to chat messages later is erased unless it is listed here.)
KEPT_ON_DELETE = ("reply_to", "kind")
# The data of a chat.edited event once its message is deleted: the body erased too.
ERASED_EDIT = {"body": "", "deleted": True}


class AlreadyDeleted(Rejected):
    """A delete of a message already deleted: nothing to do (REST answers 204)."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.NOT_FOUND, "this message was deleted")


# The one place a change rewrites a message (its stored row, the hub's recent frames) -------


def edited(data: dict[str, Any], body: str, ts: str) -> dict[str, Any]:
    out = dict(data)
    out["body"] = body
    out["edited_at"] = ts
    return out


def erased(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"body": ""}
    out.update((k, data[k]) for k in KEPT_ON_DELETE if k in data)
    out["deleted"] = True
    return out


def apply_change(
    message: dict[str, Any], change_type: str, change: dict[str, Any], ts: str
) -> dict[str, Any]:
    """A message's data after a ``chat.edited`` (its data and ts) or ``chat.deleted``. An
    edit erased since (its message was deleted) erases: there is nothing left to show."""
    if change_type == EDITED and not change.get("deleted"):
        return edited(message, change["body"], ts)
    return erased(message)


FRAME_KEYS = ("type", "seq", "id", "author", "ts")


def changed_frame(
    frame: dict[str, Any], change_type: str, change: dict[str, Any], ts: str
) -> dict[str, Any]:
    """A ``chat.message`` frame (``StoredEvent.frame()``'s shape) after a change."""
    data = {k: v for k, v in frame.items() if k not in FRAME_KEYS}
    out = {k: frame[k] for k in FRAME_KEYS[:4] if k in frame}
    out.update(apply_change(data, change_type, change, ts))
    out["ts"] = frame.get("ts")
    return out


# Deciding a batch ------------------------------------------------------------------------


@dataclass(slots=True)
class Message:
    """A chat message a batch changes or names, as stored now (or as this batch made it)."""

    stream: str
    seq: int
    type: str
    author_id: str
    data: dict[str, Any]
    ts: str
    indexed: bool = False  # in the search index (at or below the stream's indexed seq)
    changed: bool = False


@dataclass(slots=True)
class ChatState:
    """What a batch's changes read (under the stream lock) and what they leave to write."""

    found: dict[tuple[str, int], Message] = field(default_factory=dict)
    changed: list[Message] = field(default_factory=list)
    deleted: list[Message] = field(default_factory=list)
    index_nums: dict[str, int] = field(default_factory=dict)  # SQLite: the streams' shards


def needs_chat(items: Sequence[NewEvent]) -> bool:
    """Whether a batch holds a chat change or a reply: only then does the append path read
    or write anything for chat beyond the events themselves."""
    for item in items:
        if item.type in CHANGE_TYPES or (item.type == MESSAGE and "reply_to" in item.data):
            return True
    return False


def wanted(items: Sequence[NewEvent]) -> list[tuple[str, int]]:
    """The (stream, seq) of every message the batch's changes and replies name."""
    keys = set()
    for item in items:
        if item.type in CHANGE_TYPES:
            keys.add((item.stream, int(item.data["target"])))
        elif item.type == MESSAGE and "reply_to" in item.data:
            keys.add((item.stream, int(item.data["reply_to"])))
    return sorted(keys)


def changed_streams(items: Sequence[NewEvent]) -> list[str]:
    return sorted({item.stream for item in items if item.type in CHANGE_TYPES})


def _age(ts: str, since: str) -> float:
    return (datetime.fromisoformat(ts) - datetime.fromisoformat(since)).total_seconds()


class ChatReducer:
    """The rules of chat changes, run by every append path inside its transaction (as a
    ``Reducer`` in ``plan_batch``, prefix ``chat.``). ``edit_window``: seconds after a
    message's ``ts`` its author may edit it; 0: no limit."""

    prefix = "chat."

    def __init__(self, edit_window: float = 86_400.0) -> None:
        self.edit_window = edit_window

    # On a SQLAlchemy connection (``append_batch``); the appenders call ``chat_sqlite`` and
    # ``chat_pg`` on their own connections.
    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> ChatState:
        from . import chat_store  # it builds on this module

        return await chat_store.load(conn, items)

    async def save(self, conn: AsyncConnection, state: ChatState) -> None:
        from . import chat_store

        await chat_store.save(conn, state)

    def reduce(self, state: ChatState, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
        if item.type == MESSAGE:
            if "reply_to" in item.data:
                self._message(state, item.stream, int(item.data["reply_to"]), "reply_to")
            state.found[(item.stream, seq)] = Message(
                item.stream, seq, MESSAGE, item.author_id, item.data, ts
            )
            return item.data
        if item.type == EDITED:
            return self._edit(state, item, ts)
        if item.type == DELETED:
            return self._delete(state, item)
        return item.data

    def _message(self, state: ChatState, stream: str, seq: int, what: str) -> Message:
        message = state.found.get((stream, seq))
        if message is None or message.type != MESSAGE:
            raise Rejected(ErrorCode.NOT_FOUND, f"'{what}' names no chat message of this room")
        return message

    def _edit(self, state: ChatState, item: NewEvent, ts: str) -> dict[str, Any]:
        target = self._message(state, item.stream, int(item.data["target"]), "target")
        if target.data.get("deleted"):
            raise Rejected(ErrorCode.NOT_FOUND, "this message was deleted")
        if target.author_id != item.author_id:
            raise Rejected(ErrorCode.FORBIDDEN, "only its author may edit a message")
        if self.edit_window > 0 and _age(ts, target.ts) > self.edit_window:
            raise Rejected(
                ErrorCode.FORBIDDEN,
                f"a message may be edited for {self.edit_window:g} s after it was sent",
            )
        body = item.data["body"]
        target.data = edited(target.data, body, ts)
        _mark(state, target)
        return {"target": target.seq, "body": body}

    def _delete(self, state: ChatState, item: NewEvent) -> dict[str, Any]:
        target = self._message(state, item.stream, int(item.data["target"]), "target")
        if target.data.get("deleted"):
            raise AlreadyDeleted()
        if target.author_id != item.author_id and not item.moderator:
            raise Rejected(ErrorCode.FORBIDDEN, "only its author may delete a message")
        target.data = erased(target.data)
        _mark(state, target)
        state.deleted.append(target)
        return {"target": target.seq, "by": item.author_id}


def _mark(state: ChatState, message: Message) -> None:
    if not message.changed:
        message.changed = True
        state.changed.append(message)
