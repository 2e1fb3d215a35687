"""This process's live connections as access changes see them: every socket kind and event
stream registers here while it is open, indexed by user, by room and user, and by token id,
so a revocation or a removal finds what it must close without a scan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ..auth import Principal
from ..metrics import Metrics
from ..protocol import Close

K = TypeVar("K")


class Live(Protocol):
    """What the registry needs of a connection: its current token (``auth.refresh`` changes
    it: call ``Connections.refreshed``), how to end it now, and, for a room-scoped one, how
    to hear of a new role."""

    @property
    def principal(self) -> Principal: ...

    def end(self, code: int, reason: str) -> None:
        """Close at once (what is queued is dropped): the connection's access is gone."""
        ...

    def role_changed(self, role: str) -> None: ...


class Ender:
    """A ``Live`` made of parts, for a connection that is not an object of its own: how to
    read its current token, and how to end it."""

    __slots__ = ("_end", "_principal")

    def __init__(self, principal: Callable[[], Principal], end: Callable[[int, str], None]) -> None:
        self._principal = principal
        self._end = end

    @property
    def principal(self) -> Principal:
        return self._principal()

    def end(self, code: int, reason: str) -> None:
        self._end(code, reason)

    def role_changed(self, role: str) -> None:
        return None


@dataclass(slots=True)
class _Entry:
    user_id: str
    room_id: str | None
    token_id: str | None
    kind: str


# (kind, user id, +1 opened / -1 closed): who else hears of connections (the webhook
# notifier's attendance, realtime/notify/attendance.py).
Observer = Callable[[str, str, int], None]


@dataclass(slots=True)
class Connections:
    """The registry. Nothing here awaits: every change is applied where it is heard."""

    metrics: Metrics = field(default_factory=Metrics)
    entries: dict[Live, _Entry] = field(default_factory=dict)
    by_user: dict[str, set[Live]] = field(default_factory=dict)
    by_room: dict[tuple[str, str], set[Live]] = field(default_factory=dict)
    by_token: dict[str, set[Live]] = field(default_factory=dict)
    observers: list[Observer] = field(default_factory=list)

    def add(self, live: Live, room_id: str | None = None, kind: str = "") -> None:
        principal = live.principal
        entry = _Entry(principal.user_id, room_id, principal.token_id, kind)
        self.entries[live] = entry
        self.by_user.setdefault(entry.user_id, set()).add(live)
        if room_id is not None:
            self.by_room.setdefault((room_id, entry.user_id), set()).add(live)
        if entry.token_id is not None:
            self.by_token.setdefault(entry.token_id, set()).add(live)
        for observer in self.observers:
            observer(kind, entry.user_id, 1)

    def remove(self, live: Live) -> None:
        entry = self.entries.pop(live, None)
        if entry is None:
            return
        _discard(self.by_user, entry.user_id, live)
        if entry.room_id is not None:
            _discard(self.by_room, (entry.room_id, entry.user_id), live)
        if entry.token_id is not None:
            _discard(self.by_token, entry.token_id, live)
        for observer in self.observers:
            observer(entry.kind, entry.user_id, -1)

    def refreshed(self, live: Live) -> None:
        """The connection took a new token (same user): index its new id."""
        entry = self.entries.get(live)
        if entry is None:
            return
        if entry.token_id is not None:
            _discard(self.by_token, entry.token_id, live)
        entry.token_id = live.principal.token_id
        if entry.token_id is not None:
            self.by_token.setdefault(entry.token_id, set()).add(live)

    def __len__(self) -> int:
        return len(self.entries)

    # What access changes do ----------------------------------------------------------
    def removed(self, room_id: str, user_id: str) -> int:
        """The user left the room: their sockets of it close 4403."""
        found = list(self.by_room.get((room_id, user_id), ()))
        return self._end(found, Close.FORBIDDEN, "removed from this room", "removed")

    def role_changed(self, room_id: str, user_id: str, role: str) -> None:
        for live in list(self.by_room.get((room_id, user_id), ())):
            live.role_changed(role)

    def revoke_user(self, user_id: str, issued_before: float) -> int:
        """Every connection of the user whose token was issued before the moment."""
        found = [
            live
            for live in self.by_user.get(user_id, ())
            if live.principal.issued_at < issued_before
        ]
        return self._end(found, Close.UNAUTHORIZED, "token revoked", "revoked")

    def revoke_token(self, token_id: str) -> int:
        found = [
            live for live in self.by_token.get(token_id, ()) if live.principal.token_id == token_id
        ]
        return self._end(found, Close.UNAUTHORIZED, "token revoked", "revoked")

    def _end(self, found: list[Live], code: int, reason: str, label: str) -> int:
        for live in found:
            self.remove(live)  # ended once, whatever else arrives for it
            live.end(code, reason)
        if found:
            self.metrics.inc("menteo_access_closed_total", label, len(found))
        return len(found)


def _discard(index: dict[K, set[Live]], key: K, live: Live) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(live)
        if not group:
            del index[key]
