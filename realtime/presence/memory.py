"""Presence within one process."""

from __future__ import annotations

import asyncio

from .base import Announce, Presence


class _User:
    __slots__ = ("conns", "leaving", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.conns: set[str] = set()
        self.leaving: asyncio.TimerHandle | None = None


class MemoryPresence(Presence):
    def __init__(self, announce: Announce, *, grace: float) -> None:
        super().__init__(announce, grace=grace)
        self.rooms: dict[str, dict[str, _User]] = {}

    async def join(self, room: str, user_id: str, name: str, conn_id: str) -> list[dict[str, str]]:
        users = self.rooms.setdefault(room, {})
        user = users.get(user_id)
        first = user is None
        if user is None:
            user = users[user_id] = _User(name)
        if user.leaving is not None:  # back within the grace period: nobody saw them go
            user.leaving.cancel()
            user.leaving = None
        user.conns.add(conn_id)
        if first:
            self._joined(room, user_id, name)
        return await self.online(room)

    async def leave(self, room: str, user_id: str, conn_id: str, *, clean: bool) -> None:
        user = self.rooms.get(room, {}).get(user_id)
        if user is None:
            return
        user.conns.discard(conn_id)
        if user.conns:
            return
        if clean or self.grace <= 0:
            self._drop(room, user_id)
        elif user.leaving is None:
            user.leaving = asyncio.get_running_loop().call_later(
                self.grace, self._drop, room, user_id
            )

    async def online(self, room: str) -> list[dict[str, str]]:
        users = self.rooms.get(room, {})
        return [{"user_id": uid, "name": users[uid].name} for uid in sorted(users)]

    def _drop(self, room: str, user_id: str) -> None:
        users = self.rooms.get(room, {})
        user = users.get(user_id)
        if user is None or user.conns:
            return
        if user.leaving is not None:
            user.leaving.cancel()
        del users[user_id]
        if not users:
            self.rooms.pop(room, None)
        self._left(room, user_id)

    async def close(self) -> None:
        await super().close()
        for users in self.rooms.values():
            for user in users.values():
                if user.leaving is not None:
                    user.leaving.cancel()
        self.rooms.clear()
