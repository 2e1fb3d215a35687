"""The handshake every socket kind goes through: the per-address slot, origin, subprotocol,
token, then the kind's own check (room membership, a feed filter), and the refusals."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

from uvicorn.protocols.utils import ClientDisconnected

from ..auth import AuthError, Principal, Tokens
from ..metrics import Metrics
from ..persistence.database import unavailable
from ..protocol import JSON, TOKEN_SUBPROTOCOL, Close, Codec, choose_codec
from .origin import origin_allowed
from .shared_slots import SharedSlots
from .transport import ASGIReceive, ASGISend

log = logging.getLogger("menteo.socket")

G = TypeVar("G")


@dataclass(slots=True)
class Shutdown:
    """The process is draining (no new sockets) and, once stopping resolves, stopping."""

    draining: bool = False
    stopping: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def begin(self) -> None:
        self.draining = True
        if not self.stopping.done():
            self.stopping.set_result(None)


@dataclass(slots=True)
class AddressSlots:
    """Sockets and event streams open per client address: limited before any token is looked
    at, in this process and, with Redis (``shared``), over every process together."""

    limit: int
    metrics: Metrics
    counts: Counter[str] = field(default_factory=Counter)
    shared: SharedSlots | None = None

    async def claim(self, scope: dict[str, Any]) -> str | None:
        """``take``, then (with Redis) the cap over every process: one round trip."""
        address = self.take(scope)
        if address is None or self.shared is None:
            return address
        mine = self.counts[address]
        try:
            admitted = await self.shared.claim(address, mine)
        except BaseException:  # cancelled (the peer went, the process stops): not counted
            self.release(address)
            raise
        if admitted:
            self.shared.counts[address] = self.counts[address]
            if self.counts[address] != mine:  # another of its connections came or went
                self.shared.changed(address, self.counts[address])
            return address
        self.release(address)
        self.metrics.inc("menteo_limit_hits_total", "connections_per_ip")
        return None

    def take(self, scope: dict[str, Any]) -> str | None:
        """The address, counted; None when it has ``limit`` open already (refuse it)."""
        address: str = (scope.get("client") or ("?", 0))[0]
        if self.counts[address] >= self.limit:
            self.metrics.inc("menteo_limit_hits_total", "connections_per_ip")
            return None
        self.counts[address] += 1
        return address

    def release(self, address: str) -> None:
        self.counts[address] -= 1
        if not self.counts[address]:
            del self.counts[address]
        if self.shared is not None:
            self.shared.changed(address, self.counts.get(address, 0))

    @asynccontextmanager
    async def held(self, scope: dict[str, Any]) -> AsyncIterator[bool]:
        """Yields False when the address is full; otherwise holds a slot for the block."""
        address = await self.claim(scope)
        if address is None:
            yield False
            return
        try:
            yield True
        finally:
            self.release(address)


@asynccontextmanager
async def counted(metrics: Metrics, kind: str) -> AsyncIterator[None]:
    """An accepted connection: counted as opened, and open while the block runs."""
    metrics.inc("menteo_sockets_opened_total", kind)
    metrics.open[kind] += 1
    try:
        yield
    finally:
        metrics.open[kind] -= 1


@dataclass(slots=True)
class Door:
    """What admission needs of the process: how tokens are checked (the secret, the
    audience and issuer, revocations), the origins, the slots, the metrics, and whether it
    is draining."""

    tokens: Tokens
    allowed_origins: Sequence[str]
    slots: AddressSlots
    metrics: Metrics
    shutdown: Shutdown


class Refused(Exception):
    """A kind's check refused the socket: accept-then-close with ``code`` (a browser can
    read it), counted under ``label``."""

    def __init__(self, code: int, reason: str, label: str) -> None:
        super().__init__(reason)
        self.code, self.reason, self.label = code, reason, label


# The kind's own check after the token: the grant (a room and role, a filter) or Refused.
Authorize = Callable[[Principal, dict[str, list[str]], dict[str, Any]], Awaitable[G]]


def first_token(query: dict[str, list[str]]) -> str | None:
    return query.get("token", [None])[0]


def last_token(query: dict[str, list[str]]) -> str | None:
    """As ``dict(parse_qsl(...))`` reads it: the last ``token`` given."""
    values = query.get("token")
    return values[-1] if values else None


def socket_token(rules: Rules[Any], query: dict[str, list[str]], offered: list[str]) -> str | None:
    """The token a socket presents: one offered as a ``menteo.token.<token>`` subprotocol
    (how a browser keeps it out of the URL), else the URL's ``?token=`` as the kind reads
    it. Two tokens offered as subprotocols are refused: which one would be meant?"""
    carried = [p[len(TOKEN_SUBPROTOCOL) :] for p in offered if p.startswith(TOKEN_SUBPROTOCOL)]
    if len(carried) > 1:
        raise AuthError("more than one token subprotocol")
    return carried[0] if carried else rules.token(query)


@dataclass(slots=True)
class Admitted(Generic[G]):
    principal: Principal
    codec: Codec
    query: dict[str, list[str]]
    grant: G

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


async def refuse(send: ASGISend, accept: dict[str, Any], code: int, reason: str) -> None:
    """Accept, then close with ``code``: unlike an HTTP refusal, a browser can read it."""
    await send(accept)
    await send({"type": "websocket.close", "code": code, "reason": reason})


class Admission(Generic[G]):
    """Admit a socket for the ``async with`` block (None: refused), and keep the bookkeeping
    that lasts as long as it: its address slot and the open-socket gauge. With ``busy``, a
    database that cannot serve the socket (down, or its pool exhausted by a reconnect
    storm) closes it with 1013, so the client backs off and resumes, instead of 1011.

    A plain async context manager rather than ``@asynccontextmanager``: it lives as long as
    the socket, and a suspended generator frame per idle socket costs memory."""

    __slots__ = ("address", "door", "opened", "receive", "rules", "scope", "send")

    def __init__(
        self,
        door: Door,
        rules: Rules[G],
        scope: dict[str, Any],
        receive: ASGIReceive,
        send: ASGISend,
    ) -> None:
        self.door = door
        self.rules = rules
        self.scope: dict[str, Any] | None = scope
        self.receive: ASGIReceive | None = receive
        self.send: ASGISend | None = send
        self.address: str | None = None  # set while counted against its address
        self.opened = False

    async def __aenter__(self) -> Admitted[G] | None:
        door, rules, scope, receive, send = (
            self.door,
            self.rules,
            self.scope,
            self.receive,
            self.send,
        )
        assert scope is not None and receive is not None and send is not None
        self.scope = self.receive = None  # not needed past the handshake
        self.address = await door.slots.claim(scope)
        if self.address is None:
            if (await receive())["type"] == "websocket.connect":
                accept = {"type": "websocket.accept"}
                await refuse(send, accept, Close.TRY_AGAIN, rules.crowded)
            return None
        try:
            admitted = await admit(door, rules, scope, receive, send)
        except ClientDisconnected:
            # The peer went during the handshake (its server stopping closes it too): an
            # OSError, but not the database's; nobody is left to tell.
            self._release()
            return None
        except BaseException as exc:
            self._release()
            if not (rules.busy and unavailable(exc)):
                raise
            await self._busy(send, exc, accepted=False)
            return None
        if admitted is not None:
            door.metrics.inc("menteo_sockets_opened_total", rules.kind)
            door.metrics.open[rules.kind] += 1
            self.opened = True
        return admitted

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> bool:
        accepted = self.opened
        self._release()
        send, self.send = self.send, None
        if exc is None or not (self.rules.busy and unavailable(exc)) or send is None:
            return False
        if isinstance(exc, ClientDisconnected):
            return True  # the peer is gone (see __aenter__)
        await self._busy(send, exc, accepted=accepted)
        return True

    async def _busy(self, send: ASGISend, exc: BaseException, *, accepted: bool) -> None:
        log.warning("%s socket closed 1013: the database is unavailable (%r)", self.rules.kind, exc)
        self.door.metrics.inc("menteo_sockets_refused_total", "unavailable")
        with suppress(Exception):  # the peer may be gone already
            if not accepted:
                await send({"type": "websocket.accept"})
            reason = "the server is busy: reconnect with since"
            await send({"type": "websocket.close", "code": Close.TRY_AGAIN, "reason": reason})

    def _release(self) -> None:
        door = self.door
        if self.opened:
            self.opened = False
            door.metrics.open[self.rules.kind] -= 1
        address, self.address = self.address, None
        if address is not None:
            door.slots.release(address)


@dataclass(slots=True, frozen=True)
class Rules(Generic[G]):
    """One socket kind's handshake: its name (in metrics), whether it offers the codec
    subprotocols, its own check, and how it reads the token."""

    kind: str
    authorize: Authorize[G]
    subprotocols: bool = True
    own_subprotocol: str | None = None  # without codecs: selected when offered (notes)
    crowded: str = "too many connections from this address"
    busy: bool = True  # database unavailable: close 1013 (else the error propagates)
    token: Callable[[dict[str, list[str]]], str | None] = first_token


async def admit(
    door: Door, rules: Rules[G], scope: dict[str, Any], receive: ASGIReceive, send: ASGISend
) -> Admitted[G] | None:
    """Accept the socket if its caller passes the kind's check; otherwise refuse it (HTTP 403
    for a foreign origin or subprotocol, or accept-then-close with 4401/4403/4404, which a
    browser can read) and return None. Nothing of the kind is sent before this."""
    if (await receive())["type"] != "websocket.connect":
        return None
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    presented = list(scope.get("subprotocols") or [])
    # A token offered as a subprotocol is neither chosen from nor ever selected (echoed).
    offered = [p for p in presented if not p.startswith(TOKEN_SUBPROTOCOL)]
    codec = choose_codec(offered) if rules.subprotocols else JSON
    origin = headers.get("origin")
    if (
        door.shutdown.draining
        or codec is None
        or not origin_allowed(origin, headers.get("host"), door.allowed_origins)
    ):
        door.metrics.inc("menteo_sockets_refused_total", "handshake")
        await send({"type": "websocket.close", "code": Close.POLICY})  # HTTP 403
        return None
    if rules.subprotocols:
        subprotocol = codec.name if offered else None
    else:
        subprotocol = rules.own_subprotocol if rules.own_subprotocol in offered else None
    accept = {"type": "websocket.accept", "subprotocol": subprotocol}
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        principal = door.tokens.verify(socket_token(rules, query, presented))
        grant = await rules.authorize(principal, query, scope)
    except AuthError as exc:
        door.metrics.inc("menteo_sockets_refused_total", "unauthorized")
        await refuse(send, accept, Close.UNAUTHORIZED, f"unauthorized: {exc}"[:120])
        return None
    except Refused as exc:
        door.metrics.inc("menteo_sockets_refused_total", exc.label)
        await refuse(send, accept, exc.code, exc.reason[:120])
        return None
    await send(accept)
    # The handshake's headers were read above and are not read again: the list (kept by the
    # server's scope for the socket's life, ~1 KiB) can go.
    scope["headers"] = []
    return Admitted(principal, codec, query, grant)
