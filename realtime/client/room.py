"""The room client: the room socket kept open and resumed (``since``/``epoch``), the
outbox of what this user sends, presence and typing, read markers, and a thin helper for
every client frame of docs/protocol.md. Frames it does not know pass through unchanged."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import Any, Literal

import orjson

from ..protocol import Close, FrameError, chat_body
from .errors import ClientClosed
from .events import Frame
from .outbox import Outbox, Pending, new_client_id
from .presence import Presence
from .rest import request
from .sender import BURST, RATE, Sender
from .socket import SocketClient
from .transport import QueryValue, SocketTarget, path_part, socket_target

MAX_FRAME_BYTES = 65536  # the server's default MENTEO_MAX_FRAME_BYTES: over it, close 1009
NOT_EVENTS = frozenset({"ack", "read.marker"})  # frames with a seq that are not stored events


class _Place(enum.Enum):
    END = "end"


END = _Place.END  # checklist.add: at the end of the list


class RoomClient(SocketClient):
    """``async with RoomClient(url, room_id, token=T) as room:``; see the README.

    ``get_token``: called (sync or async) for a new token when the server warns that the
    token expires, and before reconnecting with one about to; ``outbox``: a JSON file that
    keeps what is not acked across restarts of this process (one file per room and user),
    or an ``Outbox``; ``since``/``epoch``: resume after a seq seen by an earlier run;
    ``handoff``: when a server process stops, move to the next socket before the old one
    closes (``reconnect``, docs/protocol.md) instead of reconnecting after its 1012."""

    name = "room socket"
    fatal_closes = frozenset({Close.UNAUTHORIZED, Close.FORBIDDEN, Close.NOT_FOUND})

    def __init__(
        self,
        url: str,
        room_id: str,
        *,
        outbox: str | os.PathLike[str] | Outbox | None = None,
        since: int | None = None,
        epoch: str | None = None,
        rate: tuple[float, float] = (RATE, BURST),
        handoff: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(url, **kw)
        self.room_id = room_id
        self.handoff = handoff
        self.last_seq, self.epoch = since, epoch
        self.outbox = outbox if isinstance(outbox, Outbox) else Outbox(outbox)
        self._sender = Sender(self.outbox, self.send, rate)
        self.presence = Presence()
        self.room: Frame | None = None  # the welcome's room, as room.updated changes it
        self.read: dict[str, int] = {}  # user_id -> read marker (issue 17's read.marker)
        self._read_wanted = 0
        self.checklist = Checklist(self.submit)

    @property
    def you(self) -> Frame | None:
        """Who I am here: ``{user_id, name, role}`` from the last welcome."""
        return self.presence.you

    # Sending ------------------------------------------------------------------------------

    def submit(self, frame: Frame) -> Pending:
        """A durable operation (any client frame the server acks): kept in the outbox, sent
        now or once live, resent with the same ``id`` after every reconnect until acked.
        ``await`` the result for the ack's seq (``FrameRefused`` if refused for good)."""
        if len(orjson.dumps(frame)) > MAX_FRAME_BYTES - 128:
            raise ValueError("the frame is over the server's 64 KiB frame limit")
        return self._sender.submit(frame)

    def send_message(
        self, body: str, *, reply_to: int | None = None, id: str | None = None
    ) -> Pending:
        """``chat.send`` (``reply_to``: the seq of the message answered, issue 19)."""
        try:
            chat_body({"body": body}, None)
        except FrameError as exc:
            raise ValueError(exc.message) from None
        return self.submit(_frame("chat.send", id, body=body, reply_to=reply_to))

    def edit_message(self, target: int, body: str, *, id: str | None = None) -> Pending:
        """``chat.edit`` of my message ``target`` (its seq)."""
        return self.submit(_frame("chat.edit", id, target=target, body=body))

    def delete_message(self, target: int, *, id: str | None = None) -> Pending:
        """``chat.delete`` of my message ``target`` (its seq): erased, not hidden."""
        return self.submit(_frame("chat.delete", id, target=target))

    def set_typing(self, active: bool) -> bool:
        """``typing``: the others get ``presence.typing``. False when not live."""
        return self.send({"type": "typing", "active": active})

    def mark_read(self, seq: int) -> None:
        """``read``: everything up to ``seq`` is read; forward only, sent now or once live."""
        if seq > self._read_wanted:
            self._read_wanted = seq
            self.send({"type": "read", "seq": seq})

    def ping(self, id: str | None = None) -> bool:
        return self.send({"type": "ping", "id": id})

    def pending(self) -> list[Pending]:
        """What waits for an ack, oldest first."""
        return self.outbox.pending()

    # REST ---------------------------------------------------------------------------------

    async def api(self, method: str, path: str, json: Any = None, **params: Any) -> Any:
        """A REST call with this client's token (needs httpx)."""
        return await request(self.base_url, self.tokens, method, path, json=json, params=params)

    async def history(self, *, before: int | None = None, limit: int | None = None) -> Any:
        """A page of older messages: ``{"messages": [oldest first], "has_more"}``."""
        path = f"api/rooms/{path_part(self.room_id)}/messages"
        return await self.api("GET", path, before=before, limit=limit)

    # The socket's hooks --------------------------------------------------------------------

    def _target(self, token: str) -> SocketTarget:
        resume = self.last_seq is not None  # the epoch too, once a welcome gave it
        query: dict[str, QueryValue] = (
            {"since": self.last_seq, "epoch": self.epoch} if resume else {}
        )
        if self.handoff:
            query["handoff"] = 1
        return socket_target(self.base_url, f"rooms/{path_part(self.room_id)}/ws", token, query)

    def _is_event(self, frame: Frame) -> bool:
        return isinstance(frame.get("seq"), int) and frame["type"] not in NOT_EVENTS

    def _welcomed(self, frame: Frame) -> None:
        if not frame.get("recovered"):  # the history is all there is, up to its seq
            self.last_seq = frame.get("seq") if isinstance(frame.get("seq"), int) else None
        self.presence.welcome(frame)
        self.room = frame.get("room") if isinstance(frame.get("room"), dict) else None
        read = frame.get("read")
        self.read = dict(read) if isinstance(read, dict) else {}
        for message in frame.get("history") or ():
            if isinstance(message, dict):
                self._mine(message)

    def _live(self) -> None:
        self._sender.live()
        if self._read_wanted:
            self.send({"type": "read", "seq": self._read_wanted})

    def _down(self) -> None:
        self._sender.down()

    def _received(self, frame: Frame) -> bool:
        kind = frame["type"]
        if kind == "ack" and isinstance(frame.get("id"), str):
            self._sender.settled(frame["id"], int(frame["seq"]))
        elif kind == "error":
            self._sender.error(frame)
        elif kind == "read.marker" and isinstance(frame.get("user_id"), str):
            self.read[frame["user_id"]] = max(self.read.get(frame["user_id"], 0), frame["seq"])
        else:
            if self._is_event(frame):
                self._mine(frame)
            if kind == "room.updated" and isinstance(frame.get("room"), dict):
                self.room = {**(self.room or {}), **frame["room"]}
            self.presence.apply(frame)
        return True

    def _mine(self, event: Frame) -> None:
        """An event of mine seen in the room settles its outbox entry (its ack was lost)."""
        cid = event.get("id")
        if not isinstance(cid, str) or cid not in self.outbox:
            return
        author = event.get("author")
        actor = author.get("user_id") if isinstance(author, dict) else event.get("by")
        me = self.you.get("user_id") if self.you else self.tokens.user_id
        if actor == me and isinstance(event.get("seq"), int):
            self._sender.settled(cid, event["seq"])

    def _stopped(self, error: BaseException | None) -> None:
        super()._stopped(error)
        self.outbox.abandon(error or ClientClosed("the room client was closed"))


def _frame(kind: str, cid: str | None, **fields: Any) -> Frame:
    frame: Frame = {"type": kind}
    if cid is not None:
        frame["id"] = cid
    frame.update({k: v for k, v in fields.items() if v is not None})
    return frame


class Checklist:
    """The roadmap checklist's operations (docs/protocol.md), each through the outbox."""

    def __init__(self, submit: Callable[[Frame], Pending]) -> None:
        self._submit = submit

    def add(
        self,
        title: str,
        *,
        description: str | None = None,
        after: str | Literal[_Place.END] | None = END,
        item_id: str | None = None,
        id: str | None = None,
    ) -> Pending:
        """A step after ``after`` (an item id; ``None``: first; by default at the end);
        ``item_id`` defaults to a new client id."""
        frame = _frame("checklist.add", id, item_id=item_id or new_client_id(), title=title)
        if description is not None:
            frame["description"] = description
        if after is not END:
            frame["after"] = after
        return self._submit(frame)

    def toggle(self, item_id: str, done: bool = True, *, id: str | None = None) -> Pending:
        return self._submit(_frame("checklist.toggle", id, item_id=item_id, done=done))

    def rename(self, item_id: str, title: str, *, id: str | None = None) -> Pending:
        return self._submit(_frame("checklist.rename", id, item_id=item_id, title=title))

    def move(self, item_id: str, after: str | None, *, id: str | None = None) -> Pending:
        """Right after ``after`` (``None``: first)."""
        frame = _frame("checklist.move", id, item_id=item_id)
        frame["after"] = after
        return self._submit(frame)

    def remove(self, item_id: str, *, id: str | None = None) -> Pending:
        return self._submit(_frame("checklist.remove", id, item_id=item_id))

    def verify(
        self,
        item_id: str,
        verified: bool = True,
        *,
        title: str | None = None,
        id: str | None = None,
    ) -> Pending:
        """The mentor confirms a ticked step; ``title``: the words the mentor saw."""
        frame = _frame("checklist.verify", id, item_id=item_id, verified=verified, title=title)
        return self._submit(frame)
