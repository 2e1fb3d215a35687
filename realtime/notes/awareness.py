"""Awareness (cursors, names) of one notes document: bounded, owned and expiring.

The wire format is y-protocols' awareness update: a count, then per entry the Yjs client
id, its clock and its state as a JSON string ("null": the client left). States are kept per
document per process, at most ``max_states`` of them; each remembers the socket (and user)
that published it, and is dropped when not renewed within the timeout, as y-protocols
clients do among themselves (they renew every 15 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pycrdt import write_var_uint

NULL = b"null"


class Entry(NamedTuple):
    client_id: int
    clock: int
    state: bytes  # JSON text; ``NULL`` removes the client's state


@dataclass(slots=True)
class Held:
    clock: int
    state: bytes
    owner: str  # the socket that published it (``NotesClient.id``), in whichever process
    user: str
    seen: float  # loop time of its last update


def parse(update: bytes, max_entries: int) -> list[Entry]:
    """The entries of an awareness update. ValueError when malformed; ``TooMany`` when it
    holds more than ``max_entries`` (checked before anything is read past the count)."""
    count, pos = _var_uint(update, 0)
    if count > max_entries:
        raise TooMany(count)
    entries = []
    for _ in range(count):
        client_id, pos = _var_uint(update, pos)
        clock, pos = _var_uint(update, pos)
        length, pos = _var_uint(update, pos)
        if pos + length > len(update):
            raise ValueError("awareness state runs past the message")
        entries.append(Entry(client_id, clock, update[pos : pos + length]))
        pos += length
    return entries


def encode(entries: list[Entry]) -> bytes:
    parts = [write_var_uint(len(entries))]
    for client_id, clock, state in entries:
        parts += (write_var_uint(client_id), write_var_uint(clock))
        parts += (write_var_uint(len(state)), state)
    return b"".join(parts)


class TooMany(ValueError):
    pass


class States:
    """The states one process holds for one document."""

    __slots__ = ("held", "max_states", "per_user", "timeout")

    def __init__(self, max_states: int, timeout: float, per_user: int | None = None) -> None:
        self.held: dict[int, Held] = {}
        self.max_states = max_states
        self.timeout = timeout
        # States one user's sockets hold together: one member cannot fill ``max_states``.
        self.per_user = max_states if per_user is None else per_user

    def apply(
        self, entries: list[Entry], owner: str, user: str, now: float
    ) -> tuple[list[Entry], int]:
        """Apply entries by y-protocols' clock rule; (the entries that changed something,
        how many new client ids were dropped because the document holds ``max_states``, or
        ``user`` holds ``per_user``, states)."""
        changed: list[Entry] = []
        dropped = 0
        for entry in entries:
            held = self.held.get(entry.client_id)
            if entry.state == NULL:
                if held is not None and entry.clock >= held.clock:
                    del self.held[entry.client_id]
                    changed.append(entry)
                continue
            if held is None:
                if len(self.held) >= self.max_states or self._count(user) >= self.per_user:
                    dropped += 1
                    continue
                self.held[entry.client_id] = Held(entry.clock, entry.state, owner, user, now)
            elif entry.clock > held.clock:
                held.clock, held.state, held.seen = entry.clock, entry.state, now
                held.owner, held.user = owner, user
            else:
                continue  # stale or repeated
            changed.append(entry)
        return changed, dropped

    def _count(self, user: str) -> int:
        return sum(1 for held in self.held.values() if held.user == user)

    def owner(self, client_id: int) -> tuple[str, str] | None:
        held = self.held.get(client_id)
        return None if held is None else (held.owner, held.user)

    def removals(self, owner: str, client_ids: set[int]) -> list[Entry]:
        """Entries that remove the states ``owner`` still holds among ``client_ids``: at
        the same clock, which y-protocols applies as a removal without using up a clock."""
        return [
            Entry(i, held.clock, NULL)
            for i in client_ids
            if (held := self.held.get(i)) is not None and held.owner == owner
        ]

    def expire(self, now: float) -> list[Entry]:
        """Drop the states not renewed within the timeout; their removal entries."""
        gone = [
            Entry(i, held.clock, NULL)
            for i, held in self.held.items()
            if now - held.seen >= self.timeout
        ]
        for entry in gone:
            del self.held[entry.client_id]
        return gone

    def next_expiry(self) -> float | None:
        """The loop time at which the oldest state expires, if any is held."""
        if not self.held:
            return None
        return min(held.seen for held in self.held.values()) + self.timeout

    def everything(self) -> bytes | None:
        """Every state held, as one awareness update (None: none)."""
        if not self.held:
            return None
        return encode([Entry(i, h.clock, h.state) for i, h in self.held.items()])


def _var_uint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or oversized varint in an awareness update")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
