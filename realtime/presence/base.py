"""Presence: who is in a room. A user is present while any of their sockets is open."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .typing import TypingGate

# (room, frame, exclude_user): how presence tells a room's sockets of a join or leave.
Announce = Callable[[str, dict[str, Any], str | None], None]


class Presence(ABC):
    def __init__(self, announce: Announce, *, grace: float) -> None:
        self.announce = announce
        self.grace = grace
        # Typing, limited per user: in this process here; RedisPresence adds a claim in Redis.
        self.typing = TypingGate(announce)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.typing.close()

    @abstractmethod
    async def join(self, room: str, user_id: str, name: str, conn_id: str) -> list[dict[str, str]]:
        """Add a socket; announce ``presence.join`` when it is the user's first. Returns
        everyone present once it is in (as ``online``): the welcome's list, read with the
        join rather than after it, one round trip per join fewer on a shared store."""

    @abstractmethod
    async def leave(self, room: str, user_id: str, conn_id: str, *, clean: bool) -> None:
        """Remove a socket. The user's last socket leaves at once when ``clean``, else after
        the grace period, unless another socket of theirs joins first."""

    @abstractmethod
    async def online(self, room: str) -> list[dict[str, str]]:
        """Everyone present, ``[{"user_id", "name"}]``, ordered by user id."""

    async def here(self, room: str, user_id: str) -> bool:
        """Whether the user has a socket in the room (on any process), without the side
        effects of ``online`` (a welcome's view): the webhook notifier asks this."""
        return any(p["user_id"] == user_id for p in await self.online(room))

    def _joined(self, room: str, user_id: str, name: str) -> None:
        self.announce(room, {"type": "presence.join", "user_id": user_id, "name": name}, user_id)

    def _left(self, room: str, user_id: str) -> None:
        self.announce(room, {"type": "presence.leave", "user_id": user_id}, user_id)
