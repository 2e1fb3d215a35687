"""What this process knows of the rooms its inbox sockets show: no I/O here.

A ``RoomView`` is one room's summary facts, kept in seq order like the hub keeps a stream
(an event ahead of a hole waits in ``pending`` while the service fills the hole from the
database), and a ``Tally`` per user with an inbox here: their marker and unread count. A
message by someone else adds one to each other member's count (up to the cap), so the work
per event is one step per inbox user of that room, whatever else those users are in.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..persistence.chat import FRAME_KEYS, apply_change
from ..reads.queries import CHAT, UNREAD_CAP, RoomFacts, summary
from .connection import InboxConnection

# One event as the inbox needs it: (seq, type, author, ts, the chat.message frame when it
# is a batch's newest message, else None).
Light = tuple[int, str, str, str, dict[str, Any] | None]


class UserInbox:
    """One user's inbox sockets on this process and the rooms they show."""

    __slots__ = ("conns", "id", "views")

    def __init__(self, user_id: str) -> None:
        self.id = user_id
        self.conns: set[InboxConnection] = set()
        self.views: dict[str, RoomView] = {}

    def send(self, frame: dict[str, Any]) -> int:
        """To every live socket of the user, encoded once per codec; how many got it."""
        encoded: dict[str, str | bytes] = {}
        sent = 0
        for conn in self.conns:
            if not conn.live:
                continue
            data = encoded.get(conn.codec.name)
            if data is None:
                data = encoded[conn.codec.name] = conn.codec.encode(frame)
            conn.transport.send(data)
            sent += 1
        return sent


class Tally:
    """A user's marker and unread count in one room. While a count is being read from the
    database (``side`` is not None) the messages applied meanwhile are counted in ``side``
    and added to the count when it arrives; ``gen`` tells a stale count from the latest."""

    __slots__ = ("gen", "loaded", "read_seq", "side", "unread", "user")

    def __init__(self, user: UserInbox) -> None:
        self.user = user
        self.read_seq = 0
        self.unread = 0
        self.side: int | None = None
        self.gen = 0
        self.loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def counted(self, gen: int, read_seq: int, unread: int) -> bool:
        """A count read up to the bound given when ``gen`` began: applied if still the latest
        (True); the tally is loaded either way."""
        if not self.loaded.done():
            self.loaded.set_result(None)
        if gen != self.gen or self.side is None:
            return False
        self.unread = min(UNREAD_CAP, unread + self.side)
        self.side = None
        self.read_seq = max(self.read_seq, read_seq)
        return True

    def read_all(self, seq: int) -> None:
        """The marker reached the room's last seq: nothing is unread (a count under way is
        stale)."""
        self.read_seq = seq
        self.unread = 0
        self.gen += 1
        self.side = None

    def begin(self) -> int:
        """A new count starts: messages applied from now on are counted beside it."""
        self.gen += 1
        self.side = 0
        return self.gen


EARLY_KEPT = 1000  # changes kept while a room loads (the newest: they decide what shows)


class RoomView:
    __slots__ = ("early", "facts", "filling", "id", "pending", "ready", "tallies")

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.facts: RoomFacts | None = None  # set when loaded
        self.tallies: dict[str, Tally] = {}  # by user id
        self.pending: dict[int, Light] = {}  # arrived ahead of a hole (or of the load)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.filling: asyncio.Task[None] | None = None
        # Edits and deletes that came while the room was loading: the load may have read
        # the database before them, so they are applied to what it read (in order).
        self.early: list[list[Any]] = []

    @property
    def last_seq(self) -> int:
        return self.facts.last_seq if self.facts is not None else 0

    def loaded(self, facts: RoomFacts) -> None:
        self.facts = facts
        early, self.early = self.early, []
        self.change(early)
        if not self.ready.done():
            self.ready.set_result(None)

    def arrive(self, lights: list[Light]) -> bool:
        """Take events in any order; apply those that follow on. True if any was applied."""
        last = self.last_seq
        for light in lights:
            if light[0] > last or self.facts is None:
                self.pending[light[0]] = light
        return self.advance() if self.facts is not None else False

    def advance(self) -> bool:
        facts = self.facts
        assert facts is not None
        applied = False
        while self.pending:
            light = self.pending.pop(facts.last_seq + 1, None)
            if light is None:
                break
            self.apply(light)
            applied = True
        for seq in [s for s in self.pending if s <= facts.last_seq]:
            del self.pending[seq]
        return applied

    def apply(self, light: Light) -> None:
        seq, type_, author, ts, frame = light
        facts = self.facts
        assert facts is not None
        facts.last_seq, facts.last_ts = seq, ts
        if type_ != CHAT:
            return
        if frame is not None:
            facts.last_message = frame
        for user_id, tally in self.tallies.items():
            if user_id != author and seq > tally.read_seq:  # your own never count
                if tally.side is not None:
                    tally.side += 1
                elif tally.unread < UNREAD_CAP:
                    tally.unread += 1

    def change(self, changes: list[list[Any]]) -> bool:
        """Apply ``[type, data, ts]`` edits and deletes aimed at the room's last message (a
        delete erases its words from the summary); True if it changed."""
        facts = self.facts
        if facts is None:
            self.early = [*self.early, *changes][-EARLY_KEPT:]
            return False
        last = facts.last_message
        if last is None:
            return False
        changed = False
        for type_, data, ts in changes:
            if data.get("target") == last.get("seq"):
                kept = {k: last[k] for k in FRAME_KEYS if k in last}
                body = {k: v for k, v in last.items() if k not in FRAME_KEYS}
                last = {**kept, **apply_change(body, type_, data, ts)}
                changed = True
        facts.last_message = last
        return changed

    def summary(self, tally: Tally) -> dict[str, Any]:
        assert self.facts is not None
        return summary(self.facts, tally.read_seq, tally.unread)

    def notify(self, only: Tally | None = None) -> int:
        """Send the room's summary to each user here whose count is settled (or ``only``
        to one); how many sockets it went to."""
        if self.facts is None:
            return 0
        sent = 0
        for tally in self.tallies.values() if only is None else (only,):
            if tally.side is None and tally.loaded.done():
                sent += tally.user.send({"type": "inbox.room", "room": self.summary(tally)})
        return sent
