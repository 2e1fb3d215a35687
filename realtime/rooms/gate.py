"""The handshake every room-scoped socket goes through: origin, token, room, membership."""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ..auth import AuthError, Principal, verify_token
from ..persistence.database import unavailable
from ..persistence.rooms import RoomRecord, get_room_sync
from ..protocol import JSON, Close, Codec, choose_codec
from ..sockets.origin import origin_allowed
from ..sockets.transport import ASGIReceive, ASGISend
from ..state import State

log = logging.getLogger("menteo.rooms")


@dataclass(slots=True)
class Admitted:
    room: RoomRecord
    principal: Principal
    role: str  # mentor, mentee or service
    codec: Codec
    query: dict[str, list[str]]

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class Admission:
    """Admit a room-scoped socket for the ``async with`` block (None: refused): ``admit``,
    plus the bookkeeping that lasts as long as the socket: sockets per address (limited
    before any token is looked at) and the open-socket gauge. A database that
    cannot serve the socket (down, or its pool exhausted by a reconnect storm) closes it
    with 1013, so the client backs off and resumes, instead of failing with 1011.

    A plain async context manager rather than ``@asynccontextmanager``: it lives as long as
    the socket, and a suspended generator frame per idle socket costs memory."""

    __slots__ = ("address", "kind", "opened", "receive", "scope", "send", "state", "subprotocols")

    def __init__(
        self,
        state: State,
        scope: dict[str, Any],
        receive: ASGIReceive,
        send: ASGISend,
        *,
        kind: str,
        subprotocols: bool,
    ) -> None:
        self.state = state
        self.scope: dict[str, Any] | None = scope
        self.receive: ASGIReceive | None = receive
        self.send: ASGISend | None = send
        self.kind = kind
        self.subprotocols = subprotocols
        self.address: str | None = None  # set while counted against its address
        self.opened = False

    async def __aenter__(self) -> Admitted | None:
        state, scope, receive, send = self.state, self.scope, self.receive, self.send
        assert scope is not None and receive is not None and send is not None
        self.scope = self.receive = None  # not needed past the handshake
        address = (scope.get("client") or ("?", 0))[0]
        metrics = state.metrics
        if state.sockets_per_ip[address] >= state.settings.max_connections_per_ip:
            metrics.inc("menteo_limit_hits_total", "connections_per_ip")
            await receive()  # the connect message
            await send({"type": "websocket.accept"})
            await send(
                {
                    "type": "websocket.close",
                    "code": Close.TRY_AGAIN,
                    "reason": "too many connections from this address",
                }
            )
            return None
        state.sockets_per_ip[address] += 1
        self.address = address
        try:
            admitted = await admit(state, scope, receive, send, subprotocols=self.subprotocols)
        except BaseException as exc:
            self._release()
            if not unavailable(exc):
                raise
            await self._busy(send, exc, accepted=False)
            return None
        if admitted is not None:
            metrics.inc("menteo_sockets_opened_total", self.kind)
            metrics.open[self.kind] += 1
            self.opened = True
        return admitted

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> bool:
        accepted = self.opened
        self._release()
        send, self.send = self.send, None
        if exc is None or not unavailable(exc) or send is None:
            return False
        await self._busy(send, exc, accepted=accepted)
        return True

    async def _busy(self, send: ASGISend, exc: BaseException, *, accepted: bool) -> None:
        log.warning("%s socket closed 1013: the database is unavailable (%s)", self.kind, exc)
        self.state.metrics.inc("menteo_sockets_refused_total", "unavailable")
        with suppress(Exception):  # the peer may be gone already
            if not accepted:
                await send({"type": "websocket.accept"})
            reason = "the server is busy: reconnect with since"
            await send({"type": "websocket.close", "code": Close.TRY_AGAIN, "reason": reason})

    def _release(self) -> None:
        state = self.state
        if self.opened:
            self.opened = False
            state.metrics.open[self.kind] -= 1
        address, self.address = self.address, None
        if address is not None:
            state.sockets_per_ip[address] -= 1
            if not state.sockets_per_ip[address]:
                del state.sockets_per_ip[address]


async def admit(
    state: State, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend, *, subprotocols: bool
) -> Admitted | None:
    """Accept the socket if its caller may use the room in the path; otherwise refuse it
    (HTTP 403 for a foreign origin or subprotocol, or accept-then-close with 4401/4403/4404,
    which a browser can read) and return None. Nothing of the room is sent before this."""
    if (await receive())["type"] != "websocket.connect":
        return None
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    offered = list(scope.get("subprotocols") or [])
    codec = choose_codec(offered) if subprotocols else JSON
    if (
        state.draining
        or codec is None
        or not origin_allowed(
            headers.get("origin"), headers.get("host"), state.settings.allowed_origins
        )
    ):
        state.metrics.inc("menteo_sockets_refused_total", "handshake")
        await send({"type": "websocket.close", "code": Close.POLICY})  # HTTP 403
        return None
    accept = {
        "type": "websocket.accept",
        "subprotocol": codec.name if subprotocols and offered else None,
    }
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = query.get("token", [None])[0]
    try:
        principal = verify_token(state.settings.secret, token)
    except AuthError as exc:
        state.metrics.inc("menteo_sockets_refused_total", "unauthorized")
        await _refuse(send, accept, Close.UNAUTHORIZED, f"unauthorized: {exc}"[:120])
        return None
    room_id = scope["path_params"]["room_id"]
    room = state.rooms.get(room_id)
    if room is None:
        room = await state.db.run(get_room_sync, room_id)
        if room is not None:
            state.rooms[room_id] = room  # rooms and their members never change once created
    if room is None:
        state.metrics.inc("menteo_sockets_refused_total", "not_found")
        await _refuse(send, accept, Close.NOT_FOUND, "no such room")
        return None
    member = room.member(principal.user_id)
    if member is None and not principal.is_service:
        state.metrics.inc("menteo_sockets_refused_total", "forbidden")
        await _refuse(send, accept, Close.FORBIDDEN, "not a member of this room")
        return None
    await send(accept)
    # The handshake's headers were read above and are not read again: the list (kept by the
    # server's scope for the socket's life, ~1 KiB) can go.
    scope["headers"] = []
    role = member.role if member is not None else "service"
    return Admitted(room, principal, role, codec, query)


async def _refuse(send: ASGISend, accept: dict[str, Any], code: int, reason: str) -> None:
    await send(accept)
    await send({"type": "websocket.close", "code": code, "reason": reason})
