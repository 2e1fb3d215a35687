"""The per-process hub: one broker subscription per stream, ordered gap-free delivery.

Events reach the hub from this process's writer (after commit) and from the broker (other
processes). The hub keeps each stream's next expected seq: an event ahead of it waits while
the hole is filled from the database, one behind it is a duplicate and is dropped. So a
broker that drops, reorders or restarts costs latency, never an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import nullcontext, suppress
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection

from ..broker import Broker
from ..faults import Faults, is_fatal
from ..metrics import NOWHERE, Metrics
from ..persistence.chat import CHANGE_TYPES
from ..persistence.database import Database
from ..persistence.events import StoredEvent, last_seqs, seqs_sync
from ..persistence.turns import TurnReads
from ..protocol import JSON, Codec
from .history import Recent, RecentSnapshot, RecentSpec, Replay, seed_recent

DEGRADED_SWEEP = 0.2  # seconds between sweeps while the broker is degraded

log = logging.getLogger("menteo.hub")


class Frames:
    """A frame and its encodings, each made once however many sockets receive it."""

    __slots__ = ("_cache", "frame", "wired")

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self._cache: dict[str, str | bytes] = {}
        # Ready WebSocket frame bytes per codec, built by the socket layer (sockets/wire.py).
        self.wired: dict[str, bytes] | None = None

    def encoded(self, codec: Codec) -> str | bytes:
        data = self._cache.get(codec.name)
        if data is None:
            data = self._cache[codec.name] = codec.encode(self.frame)
        return data


class Batch(Protocol):
    """Held around the delivery of a batch of events (a commit, a broker message); the
    socket layer's ``Cork`` writes each socket's frames once at its end."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc_info: object) -> object: ...


class Listener(Protocol):
    """What the hub needs of a subscriber (a room socket, a feed socket)."""

    def on_event(self, event: StoredEvent, frames: Frames) -> None: ...

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None: ...


class _Stream:
    __slots__ = ("filling", "listeners", "next_seq", "pending", "ready", "recent")

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.next_seq = 0
        self.pending: dict[int, StoredEvent] = {}  # arrived ahead of a hole
        self.ready = asyncio.get_running_loop().create_future()
        self.filling: asyncio.Task[None] | None = None
        self.recent: Recent | None = None  # kept when the first subscriber asks for it


class Hub:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        *,
        gap_fill_delay: float = 0.05,
        sweep_interval: float = 5.0,
        page: int = 500,
        faults: Faults | None = None,
        batch: Batch | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        # The streams first subscribed in one turn (a reconnect storm) read together.
        self.first_reads: TurnReads[FirstAsk, FirstRead] = TurnReads(db, _first_reads)
        # Around each batch delivered (sockets.wire.CORK in the server): one write per socket.
        self.batch: Batch = batch if batch is not None else nullcontext()
        # A listener, a broker message or a fill that fails costs that one event, counted
        # here; delivery goes on for the others (``faults.py``).
        self.faults = faults if faults is not None else Faults()
        self.broker = broker
        self.gap_fill_delay = gap_fill_delay
        self.sweep_interval = sweep_interval
        self.page = page
        self.origin = uuid.uuid4().hex[:12]  # our own broker messages are skipped by origin
        # Channels carry the database's epoch: deployments (or test runs) sharing one Redis
        # never hear each other's streams, though stream ids like ``feed`` are the same.
        self.prefix = f"menteo:{db.epoch}:s:"
        self.streams: dict[str, _Stream] = {}
        self.sweeper: asyncio.Task[None] | None = None
        self.filled = 0  # events that came from the database instead of the broker
        # Bound once: a batch is timed without a label lookup.
        self._filled = metrics.counter("menteo_gap_fills_total") if metrics else NOWHERE
        fanout = metrics.histogram if metrics else lambda name, label: NOWHERE
        self._fanout_local = fanout("menteo_fanout_seconds", "local")
        self._fanout_broker = fanout("menteo_fanout_seconds", "broker")
        # Hooks for presence: every signal delivered here, and every broker resync (signals
        # published while the broker was away are lost; presence sends a snapshot instead).
        self.on_signal: Callable[[str, dict[str, Any]], None] | None = None
        self.on_resync: list[Callable[[], None]] = []

    async def start(self) -> None:
        await self.broker.start(self._on_broker, self.resync)
        if self.broker.shared:
            self.sweeper = asyncio.create_task(self._sweep(), name="menteo-hub-sweep")

    async def close(self) -> None:
        tasks = [s.filling for s in self.streams.values() if s.filling is not None]
        if self.sweeper is not None:
            tasks.append(self.sweeper)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task

    def subscribe(
        self, stream: str, listener: Listener, *, recent: RecentSpec | None = None
    ) -> Subscription:
        """Deliver ``stream``'s events to ``listener`` while the ``async with`` block runs.

        The first local subscriber subscribes the broker, the last one unsubscribes it.
        ``recent`` (types, limit): keep the newest ``limit`` events of ``types`` encoded
        (read with the stream's seq when it is first subscribed), for ``Hub.recent``.
        """
        return Subscription(self, stream, listener, recent)

    def recent(self, stream: str, types: Iterable[str]) -> RecentSnapshot | None:
        """The stream's newest events of ``types`` as delivered here, if they are kept."""
        state = self.streams.get(stream)
        if state is None or state.recent is None or state.recent.types != frozenset(types):
            return None
        return state.recent.snapshot(state.next_seq - 1)

    def delivered(self, stream: str) -> int | None:
        """The seq up to which ``stream``'s events have been delivered here (a listener added
        now gets every later one), or None while it is not subscribed."""
        state = self.streams.get(stream)
        if state is None or not state.ready.done() or state.ready.exception() is not None:
            return None
        return state.next_seq - 1

    def committed(self, events: list[StoredEvent]) -> None:
        """The writer's hook: deliver locally at once, then tell the other processes."""
        started = time.perf_counter()  # just committed
        with self.batch:
            for event in events:
                self._arrive(event)
        self._fanout_local.observe(time.perf_counter() - started)  # written (or queued)
        if self.broker.shared:
            # One broker message per stream per commit, not per event: every process runs
            # the pub/sub machinery and the JSON decode once for all of a stream's events.
            batches: dict[str, list[list[Any]]] = {}
            for event in events:
                batches.setdefault(event.stream, []).append(_event_wire(event))
            for stream, wires in batches.items():
                wire = (
                    {"o": self.origin, "e": wires[0]}
                    if len(wires) == 1
                    else {"o": self.origin, "es": wires}  # in seq order, as committed
                )
                self._publish(stream, wire)

    def signal(self, stream: str, frame: dict[str, Any], exclude_user: str | None = None) -> None:
        """An ephemeral frame (presence, typing): no seq, not stored, best effort."""
        self._signal_local(stream, Frames(frame), exclude_user)
        if self.broker.shared:
            self._publish(stream, {"o": self.origin, "g": frame, "x": exclude_user})

    def _publish(self, stream: str, wire: dict[str, Any]) -> None:
        """Tell the other processes; one message that cannot be encoded (odd text from a
        client) is theirs to miss (stored events come back by sweep), not the caller's."""
        try:
            data = orjson.dumps(wire)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            self.faults.survived("hub", log, exc, "could not publish on %s", stream)
            return
        self.broker.publish(self.prefix + stream, data)

    def signal_local(self, stream: str, frame: dict[str, Any]) -> None:
        """An ephemeral frame for this process's subscribers only."""
        self._signal_local(stream, Frames(frame), None)

    def resync(self) -> None:
        """Read every subscribed stream's missed events from the database."""
        for stream, state in self.streams.items():
            self._schedule_fill(stream, state, delay=0.0)
        for hook in self.on_resync:
            hook()

    def _on_broker(self, channel: str, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            if msg.get("o") == self.origin:
                return
            stream = channel.removeprefix(self.prefix)
            if "es" in msg:
                with self.batch:
                    for wire in msg["es"]:
                        self._arrive(event := _event_from_wire(stream, wire))
                self._since_commit(event.ts)
            elif "e" in msg:
                self._arrive(event := _event_from_wire(stream, msg["e"]))
                self._since_commit(event.ts)
            elif "g" in msg:
                self._signal_local(stream, Frames(msg["g"]), msg.get("x"))
        except BaseException as exc:
            if is_fatal(exc):
                raise
            self.faults.survived("hub", log, exc, "bad broker message on %s", channel)

    def _since_commit(self, ts: str) -> None:
        """Time another process's commit to its frames written here, from the event's
        timestamp (milliseconds, taken in its transaction; one host's clock, or NTP's)."""
        written = time.time()
        self._fanout_broker.observe(max(0.0, written - datetime.fromisoformat(ts).timestamp()))

    def _signal_local(self, stream: str, frames: Frames, exclude_user: str | None) -> None:
        state = self.streams.get(stream)
        if state is None:
            return
        if self.on_signal is not None:
            try:
                self.on_signal(stream, frames.frame)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                self.faults.survived("hub", log, exc, "the signal hook failed on %s", stream)
        for listener in list(state.listeners):
            try:
                listener.on_signal(frames, exclude_user)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                self.faults.survived("hub", log, exc, "listener failed on a signal")

    def _arrive(self, event: StoredEvent) -> None:
        state = self.streams.get(event.stream)
        if state is None:
            return
        if event.seq >= state.next_seq:
            state.pending[event.seq] = event
            if state.ready.done():
                self._advance(event.stream, state)

    def _advance(self, stream: str, state: _Stream) -> None:
        """Deliver pending events while they follow on; schedule a fill for a hole."""
        while state.pending:
            event = state.pending.pop(state.next_seq, None)
            if event is None:
                break
            state.next_seq += 1
            self._deliver(state, event)
        if state.pending:
            for seq in [s for s in state.pending if s < state.next_seq]:
                del state.pending[seq]
        if state.pending:
            self._schedule_fill(stream, state, delay=self.gap_fill_delay)

    def _deliver(self, state: _Stream, event: StoredEvent) -> None:
        """Hand one event to every listener: one that fails (whatever it raises) costs only
        its own copy; the others, and the events after it, are delivered."""
        try:
            frames = Frames(event.frame())
            recent = state.recent
            if recent is not None and event.type in recent.types:
                encoded = frames.encoded(JSON)  # the fan-out's own encoding, when it is JSON
                recent.add(event.seq, encoded if isinstance(encoded, str) else encoded.decode())
        except BaseException as exc:
            if is_fatal(exc):
                raise
            self.faults.survived("hub", log, exc, "could not encode %s#%d", event.stream, event.seq)
            return
        if recent is not None and event.type in CHANGE_TYPES:
            try:
                recent.change(event)  # an edit or a delete rewrites the kept message
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                self.faults.survived(
                    "hub", log, exc, "could not apply %s#%d", event.stream, event.seq
                )
        for listener in list(state.listeners):
            try:
                listener.on_event(event, frames)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                self.faults.survived(
                    "hub", log, exc, "listener failed on %s#%d", event.stream, event.seq
                )

    def _schedule_fill(self, stream: str, state: _Stream, *, delay: float) -> None:
        if state.filling is None and state.ready.done():
            state.filling = asyncio.create_task(self._fill(stream, state, delay))

    async def _fill(self, stream: str, state: _Stream, delay: float) -> None:
        replay = Replay(stream, self.page)
        try:
            if delay:
                await asyncio.sleep(delay)  # the broker may still bring the hole
            while self.streams.get(stream) is state and not replay.done:
                if delay and not state.pending:
                    break
                events = await replay.next(self.db, state.next_seq - 1)
                for event in events:
                    if event.seq == state.next_seq:
                        state.pending.pop(event.seq, None)
                        state.next_seq += 1
                        self.filled += 1
                        self._filled.inc()
                        self._deliver(state, event)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            self.faults.survived("hub", log, exc, "filling %s from the database failed", stream)
        finally:
            state.filling = None
        if self.streams.get(stream) is state:
            self._advance(stream, state)

    async def _sweep(self) -> None:
        """Catch events whose broker message was lost with nothing after it to show the hole.
        While the broker is degraded (Redis away or stalled) every ``DEGRADED_SWEEP`` s, so
        that other processes' events reach our sockets within a fraction of a second
        through the database instead of waiting for Redis to come back."""
        loop = asyncio.get_running_loop()
        swept_at = loop.time()
        while True:
            await asyncio.sleep(min(DEGRADED_SWEEP, self.sweep_interval))
            if not self.broker.degraded() and loop.time() - swept_at < self.sweep_interval:
                continue
            swept_at = loop.time()
            if not self.streams:
                continue
            try:
                async with self.db.read() as conn:
                    seqs = await last_seqs(conn, list(self.streams))
            except Exception:
                log.warning("sweep could not read the database", exc_info=True)
                continue
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                self.faults.survived("hub", log, exc, "the sweep failed")
                continue
            for stream, last in seqs.items():
                state = self.streams.get(stream)
                if state is not None and last >= state.next_seq:
                    self._schedule_fill(stream, state, delay=0.0)


class Subscription:
    """``Hub.subscribe``'s context manager: a plain object, not ``@asynccontextmanager``,
    since one lives as long as each socket and a suspended generator frame costs memory."""

    __slots__ = ("hub", "listener", "recent", "state", "stream")

    def __init__(
        self, hub: Hub, stream: str, listener: Listener, recent: RecentSpec | None
    ) -> None:
        self.hub = hub
        self.stream = stream
        self.listener = listener
        self.recent = recent
        self.state: _Stream | None = None

    async def __aenter__(self) -> None:
        hub, stream = self.hub, self.stream
        state = hub.streams.get(stream)
        if state is None:
            state = hub.streams[stream] = _Stream()
            try:
                await hub.broker.subscribe(hub.prefix + stream)
                # Read the sequencer only once the broker would tell us of newer events.
                last, recent = await hub.first_reads.read((stream, self.recent))
                state.next_seq = last + 1
                state.recent = recent
            except BaseException as exc:
                del hub.streams[stream]
                state.ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
                state.ready.exception()  # retrieved: waiters re-raise their own copy
                raise
            state.ready.set_result(None)
            hub._advance(stream, state)  # events that arrived while we read
        else:
            await asyncio.shield(state.ready)
        state.listeners.add(self.listener)
        self.state = state

    async def __aexit__(self, *exc_info: object) -> None:
        state, self.state = self.state, None
        if state is None:
            return
        hub, stream = self.hub, self.stream
        state.listeners.discard(self.listener)
        if not state.listeners and hub.streams.get(stream) is state:
            del hub.streams[stream]
            if state.filling is not None:
                state.filling.cancel()
            with suppress(Exception):
                await hub.broker.unsubscribe(hub.prefix + stream)


FirstAsk = tuple[str, RecentSpec | None]  # a stream, and the recent events to keep of it
FirstRead = tuple[int, Recent | None]


def _first_reads(conn: Connection, asks: list[FirstAsk]) -> list[FirstRead]:
    """Each stream's last seq and, if asked for, its newest events of some types up to it:
    the seqs in one statement (one prepared for a lone stream)."""
    lasts = seqs_sync(conn, sorted({stream for stream, _ in asks}))
    reads: list[FirstRead] = []
    for stream, spec in asks:
        last = lasts.get(stream, 0)
        reads.append((last, None if spec is None else seed_recent(conn, stream, spec, last)))
    return reads


def _event_wire(event: StoredEvent) -> list[Any]:
    return [
        event.seq,
        event.type,
        event.author_id,
        event.author_name,
        event.client_id,
        event.data,
        event.ts,
    ]


def _event_from_wire(stream: str, wire: list[Any]) -> StoredEvent:
    seq, type_, author_id, author_name, client_id, data, ts = wire
    return StoredEvent(stream, seq, type_, author_id, author_name, client_id, data, ts)
