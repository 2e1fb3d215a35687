"""One notes document per room per process, shared by that process's notes sockets.

Every update from a client is stored (group commit, as an event on the room's notes stream)
before any socket receives it; the hub then delivers it here from whichever process took it,
and this document applies it and relays it. Yjs updates commute and repeat harmlessly, so
the order the hub imposes costs nothing and a process that missed some catches up from the
database like any stream. Awareness (cursors, names) is ephemeral and goes as hub signals.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from pycrdt import Doc, create_awareness_message, create_update_message

from ..config import Settings
from ..metrics import Metrics
from ..persistence.database import Database
from ..persistence.events import StoredEvent
from ..persistence.rooms import notes_stream
from ..sockets.transport import Transport
from ..streams.hub import Frames, Hub
from . import awareness, store
from .budget import Budget, Ledger
from .updates import describe, rebuild, snapshot, try_apply

log = logging.getLogger("menteo.notes")

# Entries in one awareness signal between processes (each process checked its sockets').
MAX_SIGNAL_ENTRIES = 1024


class NotesClient:
    __slots__ = ("awareness_budget", "awareness_ids", "id", "transport", "user_id")

    def __init__(self, conn_id: str, transport: Transport, user_id: str) -> None:
        self.id = conn_id
        self.transport = transport
        self.user_id = user_id
        self.awareness_ids: set[int] = set()  # Yjs client ids this socket introduced
        self.awareness_budget: Budget | None = None  # set by the socket on first use


class NotesDocument:
    def __init__(
        self,
        room_id: str,
        db: Database,
        hub: Hub,
        settings: Settings,
        metrics: Metrics,
        ledger: Ledger | None = None,
    ) -> None:
        self.room_id = room_id
        self.stream = notes_stream(room_id)
        self.db = db
        self.hub = hub
        self.settings = settings
        self.doc: Doc[Any] = Doc()
        self.awareness = awareness.States(
            settings.notes_awareness_max_states,
            settings.notes_awareness_timeout,
            settings.notes_awareness_states_per_user,
        )
        self.expiry: asyncio.TimerHandle | None = None
        self.clients: set[NotesClient] = set()
        self.metrics = metrics
        # ``doc`` is always ``base`` (its last good state) plus the updates in ``log``.
        self.base = b""
        self.log: list[bytes] = []
        self.pending: Counter[bytes] = Counter()  # accepted here, not yet delivered back
        self.storing: set[asyncio.Future[Any]] = set()  # stores of accepted updates in flight
        self.seq = 0  # every update up to here is in ``doc``
        self.size = 0  # bytes of the encoded document, kept roughly up to date
        self.measured = 0  # ``size`` as last measured: not above the real encoded size
        self.since_compaction = 0
        self.bytes_since_compaction = 0
        self.compact_share = _compact_share()
        self.version = 0  # changes whenever ``doc`` may have
        self.full: tuple[int, bytes] | None = None  # (version, doc.get_update())
        self.ledger = ledger if ledger is not None else Ledger(settings)
        self.compacting: asyncio.Task[None] | None = None
        self.stack = AsyncExitStack()
        self.closed = asyncio.Event()  # set once compacted and unsubscribed

    async def open(self) -> None:
        await self.stack.enter_async_context(self.hub.subscribe(self.stream, self))
        loaded = await store.read(self.db, self.room_id, self.metrics)
        # Updates the hub delivered while we read are applied again: they repeat harmlessly.
        early, self.log = self.log, loaded.updates
        self.doc, self.base = loaded.doc, loaded.base
        for update in early:
            self._apply(update, "delivered")
        self.seq = max(self.seq, loaded.seq)
        self.since_compaction = len(loaded.updates)
        self.bytes_since_compaction = sum(len(u) for u in loaded.updates)
        self.size = self.measured = len(self.doc.get_update())

    async def close(self) -> None:
        if self.compacting is not None:
            with suppress(Exception):
                await self.compacting
        if self.since_compaction:
            await self._compact()
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        await self.stack.aclose()
        self.closed.set()

    # Hub listener -----------------------------------------------------------------------
    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        self.seq = max(self.seq, event.seq)
        if event.type != store.UPDATE:
            return  # a quarantined row
        try:
            update = store.update_of(event)
        except Exception:
            log.warning("notes update %s#%d is not base64", self.stream, event.seq)
            return
        if self.pending[update]:
            self._settle(update)  # one of ours: applied to ``doc`` when it was accepted
        elif not self._apply(update, f"#{event.seq}"):
            return  # stored elsewhere but does not apply here: not relayed (see ``_apply``)
        self.since_compaction += 1
        self.bytes_since_compaction += len(update)
        message = create_update_message(update)
        origin = event.data.get("c")
        if not any(client.id == origin for client in self.clients):
            self.size += len(update)  # ours were counted when accepted (see ``reserve``)
        for client in self.clients:
            if client.id != origin:
                client.transport.send(message)
        share = self.compact_share
        due = (
            self.since_compaction >= share * self.settings.notes_compact_every
            or self.bytes_since_compaction >= share * self.settings.notes_compact_bytes
        )
        if due and self.compacting is None:
            self.compacting = asyncio.create_task(self._compact())

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        """Awareness from a socket of this process or another: checked at the socket that
        received it (see ``socket._awareness``); here the document's cap and clocks apply."""
        frame = frames.frame
        if frame.get("type") != "notes.awareness":
            return
        try:
            entries = awareness.parse(base64.b64decode(frame["a"]), MAX_SIGNAL_ENTRIES)
        except ValueError:
            log.warning("bad awareness signal on %s", self.stream)
            return
        origin = str(frame.get("c"))
        changed, dropped = self.awareness.apply(
            entries, origin, str(frame.get("u")), asyncio.get_running_loop().time()
        )
        if dropped:
            self.metrics.inc("menteo_limit_hits_total", "notes_awareness_states", dropped)
        if changed:
            self._relay_awareness(changed, origin)
            self._schedule_expiry()

    def reserve(self, update: bytes) -> bool:
        """Count an update from one of our sockets against the size cap before storing it,
        so that a burst cannot overshoot the cap while its first updates are committing.

        ``size`` adds up updates, which overstates a document whose text was deleted: before
        refusing, the real encoded size is measured (once per bytes accepted since the last
        measure, so refusals in a row measure once)."""
        cap = self.settings.notes_max_doc_bytes
        if self.size + len(update) > cap and self.size != self.measured:
            self.size = self.measured = len(self.doc.get_update())
        if self.size + len(update) > cap:
            return False
        self.size += len(update)
        return True

    def spend(self, user_id: str, update: bytes) -> bool:
        """Take an update's bytes from its user's budget for this document (every socket of
        the user in this process together): False, over it."""
        return self.ledger.spend(self.room_id, user_id, len(update))

    def cooling(self, user_id: str) -> bool:
        """Whether the user sent an invalid update a moment ago: its updates are refused
        without being applied, so that refusals (each a rebuild) stay few."""
        return self.ledger.cooling(self.room_id, user_id)

    def full_state(self) -> bytes:
        """The whole document as one update, encoded once per version of it."""
        if self.full is None or self.full[0] != self.version:
            self.full = (self.version, self.doc.get_update())
        return self.full[1]

    def accept(self, update: bytes, user_id: str = "") -> bool:
        """Validate an update from one of our sockets against the room's real document by
        applying it (guarded), before it is stored. False: refused, ``doc`` rebuilt as it
        was. Accepted updates wait in ``pending`` until the hub delivers them back, so that
        they are applied once."""
        if not self._apply(update, "from a socket"):
            self.size -= len(update)
            self.ledger.strike(self.room_id, user_id)
            return False
        self.pending[update] += 1
        return True

    def not_stored(self, update: bytes) -> None:
        """An accepted update could not be stored (a full disk, the database away): ``doc``
        forgets it. Kept, it would be in the state vector this process sends at the
        sender's next sync, so the sender would never send it again and it would never be
        stored (the soak's disk-full chaos found that). Its sender keeps the edit, is
        closed 1011 and syncs it again on reconnect."""
        self._settle(update)
        if update not in self.log:
            return  # compacted into ``base`` meanwhile: stored with the snapshot
        self.log.remove(update)
        self.size = max(0, self.size - len(update))
        self.doc = rebuild(self.base, self.log)
        self.version += 1

    def _settle(self, update: bytes) -> None:
        left = self.pending[update] - 1
        if left > 0:
            self.pending[update] = left
        else:
            self.pending.pop(update, None)

    def _apply(self, update: bytes, source: str) -> bool:
        """Apply to ``doc``, never raising for the update's sake: on any failure (a Yrs
        panic included) the document is rebuilt from ``base`` and ``log``, which hold every
        update it applied, because a panic may have left it half-changed."""
        failure = try_apply(self.doc, update)
        self.version += 1
        if failure is None:
            self.log.append(update)
            return True
        why = describe(failure)
        log.warning("notes update %s in %s does not apply: %s", source, self.room_id, why)
        self.metrics.inc("menteo_notes_apply_failures_total")
        self.doc = rebuild(self.base, self.log)
        self.version += 1
        return False

    # Awareness --------------------------------------------------------------------------
    def share_awareness(self, client: NotesClient, entries: list[awareness.Entry]) -> None:
        """Publish entries a socket may publish (checked by the caller) to every process."""
        frame = {
            "type": "notes.awareness",
            "a": base64.b64encode(awareness.encode(entries)).decode(),
            "c": client.id,
            "u": client.user_id,
        }
        self.hub.signal(self.stream, frame)

    def awareness_message(self) -> bytes | None:
        """Every state held (at most ``max_states`` of at most the state cap each)."""
        update = self.awareness.everything()
        return None if update is None else create_awareness_message(update)

    def forget(self, client: NotesClient) -> None:
        """A socket left: its cursors disappear for everyone."""
        removals = self.awareness.removals(client.id, client.awareness_ids)
        if removals:
            self.share_awareness(client, removals)

    def _relay_awareness(self, entries: list[awareness.Entry], origin: str | None) -> None:
        message = create_awareness_message(awareness.encode(entries))
        for client in self.clients:
            if client.id != origin:
                client.transport.send(message)

    def _schedule_expiry(self) -> None:
        if self.expiry is not None:
            return
        due = self.awareness.next_expiry()
        if due is not None:
            self.expiry = asyncio.get_running_loop().call_at(due, self._expire)

    def _expire(self) -> None:
        """States not renewed in time go, relayed as removals to this process's sockets
        (every process holding a state expires it the same way)."""
        self.expiry = None
        gone = self.awareness.expire(asyncio.get_running_loop().time())
        if gone:
            self.metrics.inc("menteo_notes_awareness_expired_total", "", len(gone))
            self._relay_awareness(gone, None)
        self._schedule_expiry()

    # Compaction -------------------------------------------------------------------------
    async def _compact(self) -> None:
        seq, count, counted = self.seq, self.since_compaction, self.bytes_since_compaction
        # The new last good state: ``log`` restarts from it (no await in between).
        state = self.base = snapshot(self.doc, self.log)
        self.log = []
        self.size = self.measured = len(state)
        keep_after = datetime.now(UTC) - timedelta(seconds=self.settings.notes_retention)
        try:
            await store.compact(
                self.db,
                self.room_id,
                state,
                seq,
                keep_after=keep_after.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            )
            self.since_compaction = max(0, self.since_compaction - count)
            self.bytes_since_compaction = max(0, self.bytes_since_compaction - counted)
            self.compact_share = _compact_share()
        except Exception:
            log.exception("compacting the notes of %s failed", self.room_id)
        finally:
            self.compacting = None


def _compact_share() -> float:
    """The share of the compaction thresholds at which a document compacts next, drawn per
    document and per compaction: rooms typing at one pace (a class, a workshop) would
    otherwise all reach the threshold within the same moment, and their snapshots, each a
    blocking encode and a write, would stall the relay together (p99 spikes every few
    seconds at 4,000 updates/s, bench/notes_compare.py)."""
    return random.uniform(0.75, 1.0)


class NotesDocuments:
    """The open documents of this process: opened by the first socket, closed by the last."""

    def __init__(
        self, db: Database, hub: Hub, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.db = db
        self.metrics = metrics if metrics is not None else Metrics()
        self.hub = hub
        self.settings = settings
        self.open: dict[str, asyncio.Future[NotesDocument]] = {}
        self.users: dict[str, int] = {}
        self.ledger = Ledger(settings)  # outlives the documents (see ``Ledger``)

    @asynccontextmanager
    async def acquire(self, room_id: str) -> AsyncIterator[NotesDocument]:
        self.users[room_id] = self.users.get(room_id, 0) + 1
        try:
            ready = self.open.get(room_id)
            if ready is None:
                ready = self.open[room_id] = asyncio.get_running_loop().create_future()
                doc = NotesDocument(
                    room_id, self.db, self.hub, self.settings, self.metrics, self.ledger
                )
                try:
                    await doc.open()
                except BaseException as exc:
                    del self.open[room_id]
                    ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
                    ready.exception()
                    raise
                ready.set_result(doc)
            yield await asyncio.shield(ready)
        finally:
            self.users[room_id] -= 1
            if not self.users[room_id]:
                del self.users[room_id]
                ready = self.open.pop(room_id, None)
                if ready is not None and ready.done() and not ready.exception():
                    await ready.result().close()
