"""The handshake check of room-scoped sockets (the room socket, the notes socket), after the
token: the room exists and the caller is a member of it (or a service)."""

from __future__ import annotations

from typing import Any

from ..access.watch import RoomWatches
from ..auth import Principal
from ..persistence.rooms import RoomRecord
from ..protocol import Close
from .admission import Refused

Grant = tuple[RoomRecord, str]  # the room, and the caller's role: mentor, mentee or service


class Membership:
    """An ``authorize`` hook (sockets/admission.py): the room in the path, and the role.

    Members change: a room with sockets in this process is read from its watch (kept current
    by the room's events), any other from the database (one read for the room's handshakes
    under way, which the room's watch then starts from: ``RoomWatches.record``); a refusal
    is confirmed by the database. Either way the socket checks again once registered with
    access (``access.service.Tracked``)."""

    __slots__ = ("rooms",)

    def __init__(self, rooms: RoomWatches) -> None:
        self.rooms = rooms

    async def __call__(
        self, principal: Principal, query: dict[str, list[str]], scope: dict[str, Any]
    ) -> Grant:
        room_id = scope["path_params"]["room_id"]
        room = await self.rooms.record(room_id)
        if room is None:
            raise Refused(Close.NOT_FOUND, "no such room", "not_found")
        member = room.member(principal.user_id)
        if member is None and not principal.is_service:
            # A refusal is confirmed by the database: the watch here may not have the event
            # of a member just added through another process (the API answered 201 already).
            room = await self.rooms.stored(room_id)
            member = room.member(principal.user_id) if room is not None else None
            if room is None:
                raise Refused(Close.NOT_FOUND, "no such room", "not_found")
        if member is None and not principal.is_service:
            raise Refused(Close.FORBIDDEN, "not a member of this room", "forbidden")
        return room, member.role if member is not None else "service"
