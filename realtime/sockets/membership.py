"""The handshake check of room-scoped sockets (the room socket, the notes socket), after the
token: the room exists and the caller is a member of it (or a service)."""

from __future__ import annotations

from typing import Any

from ..auth import Principal
from ..persistence.database import Database
from ..persistence.rooms import RoomRecord, get_room_sync
from ..protocol import Close
from .admission import Refused
from .limits import LRU

Grant = tuple[RoomRecord, str]  # the room, and the caller's role: mentor, mentee or service


class Membership:
    """An ``authorize`` hook (sockets/admission.py): the room in the path, and the role."""

    __slots__ = ("db", "rooms")

    def __init__(self, db: Database, size: int = 50_000) -> None:
        self.db = db
        # Rooms by id, as sockets look them up on every connect (a room never changes).
        self.rooms: LRU[str, RoomRecord] = LRU(size)

    async def __call__(
        self, principal: Principal, query: dict[str, list[str]], scope: dict[str, Any]
    ) -> Grant:
        room_id = scope["path_params"]["room_id"]
        room = self.rooms.get(room_id)
        if room is None:
            room = await self.db.run(get_room_sync, room_id)
            if room is not None:
                self.rooms[room_id] = room  # rooms and their members never change once created
        if room is None:
            raise Refused(Close.NOT_FOUND, "no such room", "not_found")
        member = room.member(principal.user_id)
        if member is None and not principal.is_service:
            raise Refused(Close.FORBIDDEN, "not a member of this room", "forbidden")
        return room, member.role if member is not None else "service"
