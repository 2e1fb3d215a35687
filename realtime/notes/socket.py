"""The notes socket ``/rooms/{room_id}/notes?token=T``: the y-websocket wire protocol.

Messages are binary: a message type (0 sync, 1 awareness, 3 query awareness), then for sync
a step (0 state vector, 1 missing updates, 2 update) and a length-prefixed payload. The
stock JavaScript ``WebsocketProvider`` and pycrdt speak it unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from pycrdt import create_sync_message, handle_sync_message, read_message, write_var_uint

from ..access.registry import Ender
from ..access.service import Access
from ..auth import Principal
from ..config import Settings
from ..metrics import Metrics
from ..persistence.events import NewEvent
from ..persistence.rooms import RoomRecord
from ..protocol import Close
from ..sockets.admission import Admission, Admitted, Door, Rules
from ..sockets.clock import TokenClock
from ..sockets.limits import TokenBucket
from ..sockets.membership import Grant
from ..sockets.receive import Ending, Limits, receive_loop
from ..sockets.transport import ASGIReceive, ASGISend, Transport, socket_transport
from ..streams.writer import Writer
from . import awareness, store
from .budget import Budget
from .document import NotesClient, NotesDocument, NotesDocuments
from .updates import EMPTY, FATAL, describe

log = logging.getLogger("menteo.notes")

SYNC, AWARENESS, QUERY_AWARENESS = 0, 1, 3
STEP1, STEP2, UPDATE = 0, 1, 2
INVALID_DATA = 1007  # a malformed Yjs message
DOC_TOO_LARGE = 4413
ARCHIVED = 4423  # the room is archived: its notes take no update (HTTP 423 Locked)
UNAVAILABLE = 1011
EMPTY_STATE_VECTOR = b"\x00"  # a client that holds nothing: it gets the whole document
# Sync requests to a document smaller than this are not counted: their reply is cheap.
SYNC_FREE_BYTES = 64 * 1024


@dataclass(slots=True)
class NotesParts:
    """What the notes socket is given by the composition root (app.py)."""

    door: Door
    rules: Rules[Grant]  # the handshake: the room in the path, and membership
    settings: Settings
    notes: NotesDocuments
    writer: Writer
    metrics: Metrics
    access: Access  # live members and archive flag; what removals and revocations close


class NotesSocket:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: NotesParts | None = None  # given by the lifespan (app.py)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        state = self.parts
        assert state is not None, "the lifespan has not started"
        async with Admission(state.door, state.rules, scope, receive, send) as admitted:
            if admitted is not None:
                transport = socket_transport(send, scope, state.settings, state.metrics)
                await _serve(state, admitted, receive, transport)


async def _serve(
    state: NotesParts,
    admitted: Admitted[Grant],
    receive: ASGIReceive,
    transport: Transport,
) -> None:
    principal = admitted.principal
    live = Ender(lambda: principal, transport.close_now)
    async with state.access.track(live, admitted.grant[0].id, "notes") as tracked:
        if tracked.refusal is not None:  # removed or revoked since the handshake
            await transport.close(tracked.refusal.code, tracked.refusal.reason)
            return
        assert tracked.room is not None
        await _edit(state, tracked.room, principal, transport, receive)


async def _edit(
    state: NotesParts,
    room: RoomRecord,
    principal: Principal,
    transport: Transport,
    receive: ASGIReceive,
) -> None:
    """Sync with the room's document, then serve its messages until the socket ends."""
    client = NotesClient(uuid.uuid4().hex[:16], transport, principal.user_id)
    # The y-websocket protocol has no frame for a refresh: at expiry the socket closes
    # 4401 and the provider reconnects with a fresh token.
    clock = TokenClock(transport, lambda frame: None)
    clock.set(principal.expires_at)
    async with state.notes.acquire(room.id) as doc:
        doc.clients.add(client)
        try:
            transport.send(create_sync_message(doc.doc))  # our state vector: send what we lack
            known = doc.awareness_message()
            if known is not None:
                transport.send(known)
            ending = await _receive_loop(state, doc, client, receive, principal.name, room)
            if not ending.by_peer:
                state.metrics.inc("menteo_limit_hits_total", f"notes_close_{ending.code}")
                await transport.close(ending.code, ending.reason)
        finally:
            clock.cancel()
            doc.clients.discard(client)
            doc.forget(client)


async def _receive_loop(
    state: NotesParts,
    doc: NotesDocument,
    client: NotesClient,
    receive: ASGIReceive,
    name: str,
    room: RoomRecord,
) -> Ending:
    """Serve messages until the peer goes or the socket must be closed."""
    settings = state.settings
    bucket = TokenBucket(settings.notes_rate_per_second, settings.notes_rate_burst)
    limits = Limits(
        settings.notes_max_update_bytes,
        settings.rate_strikes,
        too_big_reason="update too large",
        too_big_metric=None,  # counted as notes_close_1009
        rate_metric=None,
        binary_only=Ending(INVALID_DATA, "the notes socket takes binary Yjs messages"),
    )
    reader = _Reader(state, doc, client, name, room)
    return await receive_loop(receive, reader, limits, bucket, state.metrics)


class _Reader:
    """The notes side of the receive loop: a message over the rate is still applied (the
    Yjs provider cannot resend it); past the strikes the socket closes."""

    __slots__ = ("client", "doc", "name", "room", "state", "transport")

    def __init__(
        self,
        state: NotesParts,
        doc: NotesDocument,
        client: NotesClient,
        name: str,
        room: RoomRecord,
    ):
        self.state, self.doc, self.client, self.name = state, doc, client, name
        self.room = room  # the room's watch view: its archive flag is current
        self.transport = client.transport

    def limited(self) -> bool:
        return False

    def handle(self, data: str | bytes) -> Ending | None:
        assert isinstance(data, bytes)
        try:
            refusal = _handle(self.state, self.doc, self.client, data, self.name, self.room)
        except FATAL:
            raise
        except BaseException as exc:  # undecodable (or a Yrs panic on a state vector):
            # refuse it; updates are applied only through ``doc.accept``, which is guarded.
            log.info("malformed notes message in %s: %s", self.doc.room_id, describe(exc))
            return Ending(INVALID_DATA, "malformed Yjs message")
        return Ending(*refusal) if refusal is not None else None


def _handle(
    state: NotesParts,
    doc: NotesDocument,
    client: NotesClient,
    data: bytes,
    name: str,
    room: RoomRecord,
) -> tuple[int, str] | None:
    kind = data[0] if data else -1
    if kind == SYNC and len(data) >= 2:
        step = data[1]
        if step == STEP1:
            return _sync(state, doc, client, data)
        if step in (STEP2, UPDATE):
            update = read_message(data[2:])
            if update != EMPTY and room.archived:  # read-only; an empty sync reply goes on
                state.metrics.inc("menteo_limit_hits_total", "notes_archived")
                return (ARCHIVED, "the room is archived: the notes are read-only")
            if update != EMPTY and doc.cooling(client.user_id):
                # Each invalid update costs a rebuild of the document: its sender waits
                # (an empty one, a fresh socket's sync reply, cannot fail and goes on).
                state.metrics.inc("menteo_limit_hits_total", "notes_refusal_cooldown")
                return (Close.TRY_AGAIN, "an invalid update was refused: try again later")
            if not doc.spend(client.user_id, update):
                state.metrics.inc("menteo_limit_hits_total", "notes_bytes")
                return (Close.POLICY, "notes write budget exceeded")
            if not doc.reserve(update):
                return (DOC_TOO_LARGE, "the notes document is full")
            # Applied to the room's own document (guarded) before it is stored: an update
            # that decodes alone can still break a document that holds other updates.
            if not doc.accept(update, client.user_id):
                return (INVALID_DATA, "invalid update")
            _store(state, doc, client, update, name)
            return None
    elif kind == AWARENESS:
        return _awareness(state, doc, client, read_message(data[1:]))
    elif kind == QUERY_AWARENESS:
        known = doc.awareness_message()
        if known is not None:
            client.transport.send(known)
        return None
    raise ValueError(f"unknown message type {kind}")


def _sync(
    state: NotesParts, doc: NotesDocument, client: NotesClient, data: bytes
) -> tuple[int, str] | None:
    """Reply to a state vector with what the client lacks: a few requests per user per
    document per minute (each may cost the whole document; reconnecting does not refill
    them; a document under ``SYNC_FREE_BYTES`` costs none), the whole document encoded once
    per version."""
    costly = doc.size > SYNC_FREE_BYTES  # ``size`` is not below the encoded size
    if costly and not doc.ledger.sync(doc.room_id, client.user_id):
        state.metrics.inc("menteo_limit_hits_total", "notes_sync")
        return (Close.POLICY, "too many sync requests")
    if read_message(data[2:]) == EMPTY_STATE_VECTOR:
        update = doc.full_state()
        reply: bytes | None = b"".join((bytes((SYNC, STEP2)), write_var_uint(len(update)), update))
    else:
        reply = handle_sync_message(data[1:], doc.doc)
    if reply is not None:
        _reply_when_stored(doc, client, reply)
    return None


def _reply_when_stored(doc: NotesDocument, client: NotesClient, reply: bytes) -> None:
    """Send a sync reply once every update it may hold is stored: ``doc`` applies an
    accepted update before its commit, and what a client receives must already be on disk
    (docs/protocol.md). If one of those stores fails, the client is closed 1011 and syncs
    again on reconnect, instead of holding text the server may not have."""
    waiting = [fut for fut in doc.storing if not fut.done()]
    if not waiting:
        client.transport.send(reply)
        return
    left, failed = len(waiting), False

    def one_done(fut: asyncio.Future[Any]) -> None:
        nonlocal left, failed
        left -= 1
        failed = failed or fut.cancelled() or fut.exception() is not None
        if left:
            return
        if failed:
            client.transport.close_soon(UNAVAILABLE, "could not store an update: sync again")
        else:
            client.transport.send(reply)

    for fut in waiting:
        fut.add_done_callback(one_done)


def _store(
    state: NotesParts, doc: NotesDocument, client: NotesClient, update: bytes, name: str
) -> None:
    item = NewEvent(
        doc.stream, "notes.update", client.user_id, name, None, store.event_data(update, client.id)
    )

    def stored(fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            # Not stored: the client keeps the edit and re-syncs it when it reconnects.
            doc.not_stored(update)
            client.transport.close_soon(UNAVAILABLE, "could not store the update")

    fut = state.writer.append(item)
    doc.storing.add(fut)
    fut.add_done_callback(doc.storing.discard)
    fut.add_done_callback(stored)


def _awareness(
    state: NotesParts, doc: NotesDocument, client: NotesClient, update: bytes
) -> tuple[int, str] | None:
    """Awareness a socket may publish: for the Yjs client ids it introduced (a few), states
    of at most the state cap, valid JSON. A client id another user's socket holds is
    dropped and counted; the same user's (a reconnect with the same Y.Doc) is taken over."""
    settings = state.settings
    if client.awareness_budget is None:
        rate = settings.notes_awareness_per_second
        client.awareness_budget = Budget(rate, max(1.0, 2 * rate))
    over_rate = not client.awareness_budget.take()
    try:
        entries = awareness.parse(update, settings.notes_awareness_ids_per_socket)
    except awareness.TooMany:
        return (Close.POLICY, "too many awareness client ids")
    allowed = []
    for entry in entries:
        if len(entry.state) > settings.notes_awareness_state_bytes:
            return (Close.TOO_BIG, "awareness state too large")
        if entry.state != awareness.NULL:
            try:
                value = orjson.loads(entry.state)
            except orjson.JSONDecodeError:  # would throw in every other member's client
                return (INVALID_DATA, "malformed awareness state")
            if value is None:
                entry = entry._replace(state=awareness.NULL)
        if entry.client_id not in client.awareness_ids:
            owner = doc.awareness.owner(entry.client_id)
            if owner is not None and owner[1] != client.user_id:
                state.metrics.inc("menteo_limit_hits_total", "notes_awareness_foreign")
                continue
            if len(client.awareness_ids) >= settings.notes_awareness_ids_per_socket:
                return (Close.POLICY, "too many awareness client ids")
            client.awareness_ids.add(entry.client_id)
        allowed.append(entry)
    if over_rate:
        # Renewals faster than the rate are dropped (the next one restores the state);
        # removals always go.
        kept = [entry for entry in allowed if entry.state == awareness.NULL]
        if len(kept) < len(allowed):
            state.metrics.inc("menteo_limit_hits_total", "notes_awareness_rate")
        allowed = kept
    if allowed:
        doc.share_awareness(client, allowed)
    return None
