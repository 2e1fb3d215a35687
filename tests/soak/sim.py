"""Simulated users: a room socket each (chat and checklist), and for some a notes socket.

Every user keeps what a real client keeps (docs/protocol.md, "Resuming, step by step"): the
room's epoch, the highest seq it has applied, and an outbox of operations not yet acked,
which it resends with the same ids after every reconnect. It also keeps its whole view of
the room (every durable event it was sent) so that the end of the run can compare it with
the database, and it checks each frame as it arrives: seqs must follow one another with no
gap and no repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets
from infra import Server
from pycrdt import (
    Doc,
    Text,
    TransactionEvent,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from menteo_testkit.checklist_model import ITEM_FIELDS, EventView, ViewError

ACK_TIMEOUT = 15.0  # an op without an ack this long on an open socket is sent again
# After a close (1012, an abort, a killed process) the first retry goes at once, with up to
# 50 ms of jitter so a crowd does not arrive in one burst; only failed attempts back off.
RETRY_JITTER = 0.05
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5.0
CONNECT_TIMEOUT = 15.0


@dataclass
class Stats:
    """Counters shared by every simulated user (one process, one event loop)."""

    connects: Counter[str] = field(default_factory=Counter)  # "room"/"notes" -> welcomes
    connect_failures: Counter[str] = field(default_factory=Counter)  # reason -> count
    closes: Counter[str] = field(default_factory=Counter)  # close code seen -> count
    errors: Counter[str] = field(default_factory=Counter)  # error frame code -> count
    sent: Counter[str] = field(default_factory=Counter)  # op kind -> first sends
    resent_reconnect: int = 0
    resent_timeout: int = 0
    resent_unavailable: int = 0
    dropped: int = 0  # sockets aborted by the chaos loop
    churned: int = 0  # sockets closed cleanly by their client to reconnect
    moved: int = 0  # room sockets handed off: the next one welcomed before the old closed
    move_failures: int = 0  # asked to reconnect, but the next socket failed (a 1012 followed)
    violations: list[str] = field(default_factory=list)  # gaps, repeats, mismatches seen live
    ack_latency: list[float] = field(default_factory=list)
    delivery_latency: list[float] = field(default_factory=list)  # send -> the peer's receipt
    slowest: list[tuple[float, float, str]] = field(default_factory=list)  # heap: (s, sent, what)

    def violation(self, text: str) -> None:
        if len(self.violations) < 10_000:
            self.violations.append(text)


class Sim:
    """What every simulated user shares: the servers, the phase, the counters."""

    def __init__(self, servers: list[Server], seed: int) -> None:
        self.servers = servers
        self.rng = random.Random(seed)
        self.loading = True  # actors send new operations
        self.t0 = time.monotonic()  # the start of the load (set again when it starts)
        self.load_over = asyncio.Event()
        self.closing = False  # connections are being closed for good
        self.stats = Stats()
        self.first_sent: dict[tuple[str, str], float] = {}  # (room, op id) -> first send time
        self.users: list[RoomUser] = []
        self.notes: list[NotesUser] = []
        self.followers: list[Any] = []  # feed followers (feed.py)
        # Notes words typed and deleted per room (a word is "<user>.<n>", unique).
        self.words_typed: dict[str, set[str]] = {}
        self.words_deleted: dict[str, set[str]] = {}
        self.assigned: Counter[str] = Counter()  # server name -> sockets open or opening
        self.room_high: Counter[str] = Counter()  # room -> highest seq any member saw acked
        self.before_peer = 0  # deliveries of ops sent before the peer's first connection
        self.churn = 0.0  # mean seconds between a client's clean reconnects (0: none)
        self.max_edits = 10_000  # most notes edits or feed writes per user
        # Room sockets take a hand-off (``handoff=1``): asked to ``reconnect``, a client opens
        # its next socket while the old one still serves it (docs/protocol.md).
        self.handoff = True

    def stop_load(self) -> None:
        self.loading = False
        self.load_over.set()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up when the load stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.load_over.wait(), seconds)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        """A task whose crash is a violation (not a silent warning at exit)."""
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._crashed)
        return task

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.stats.violation(f"task {task.get_name()} crashed: {task.exception()!r}")

    def pick_server(self) -> Server:
        """Balance like nginx's ``least_conn``: the server with the fewest of our sockets
        (open or opening) among those whose last health check (``/readyz``) passed."""
        up = [s for s in self.servers if s.ready] or self.servers
        fewest = min(self.assigned[s.name] for s in up)
        server = self.rng.choice([s for s in up if self.assigned[s.name] == fewest])
        self.assigned[server.name] += 1
        return server

    def release(self, server: Server) -> None:
        self.assigned[server.name] -= 1

    def churn_later(
        self, close_it: Callable[[], Awaitable[Any]], is_open: Callable[[], bool]
    ) -> asyncio.TimerHandle | None:
        """Close a connection cleanly after a random while (a tab reloaded, a phone that
        changed networks): clients then reconnect through the balancer, which also spreads
        them out again after a server restart."""
        if not self.churn or not self.loading:
            return None

        def close() -> None:
            if self.loading and is_open():
                self.stats.churned += 1
                task = asyncio.ensure_future(close_it())
                task.add_done_callback(lambda t: t.exception())

        delay = self.rng.expovariate(1 / self.churn)
        return asyncio.get_running_loop().call_later(delay, close)

    def holders(self) -> list[Any]:
        """Everything that holds a connection: room and notes sockets, feed followers."""
        return [*self.users, *self.notes, *self.followers]

    def open_sockets(self) -> dict[str, int]:
        counts = {s.name: 0 for s in self.servers}
        for holder in self.holders():
            server = holder.server
            if server is not None and holder.is_open():
                counts[server.name] += 1
        return counts

    def drop(self, fraction: float) -> list[Any]:
        """Abort a random ``fraction`` of the open connections: no close frame, no FIN."""
        open_ = [h for h in self.holders() if h.is_open()]
        victims = self.rng.sample(open_, int(len(open_) * fraction))
        for holder in victims:
            holder.abort()
        self.stats.dropped += len(victims)
        return victims


def backoff(attempt: int, rng: random.Random) -> float:
    """Seconds before reconnect attempt ``attempt`` (0: the first after a session ended)."""
    if attempt == 0:
        return rng.uniform(0, RETRY_JITTER)
    base = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1))
    return base * rng.uniform(0.5, 1.0)  # jitter, so a crowd does not come back at once


def canonical(data: dict[str, Any]) -> str:
    """An event's data as sorted JSON. A str: orjson's bytes keep their whole output buffer
    (about 4 KiB each), which over a million kept events is gigabytes."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def normalize_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: i.get(k) for k in ITEM_FIELDS} for i in items]


# A room member ---------------------------------------------------------------------------


@dataclass
class Pending:
    frame: dict[str, Any]
    sent_at: float | None = None  # on the current socket; None: not sent on it yet
    created: float = field(default_factory=time.monotonic)  # made by the user (first send)
    refused_unavailable: bool = False  # the next resend answers an `unavailable`


async def reconnecting(
    sim: Sim, rng: random.Random, session: Callable[[Server], Awaitable[bool]]
) -> None:
    """Open ``session`` through the balancer again and again until the run closes, with
    backoff and jitter after each attempt (reset once a session got its welcome)."""
    attempt = 0
    while not sim.closing:
        server = sim.pick_server()
        try:
            connected = await session(server)
        finally:
            sim.release(server)
        attempt = 0 if connected else attempt + 1
        if not sim.closing:
            await asyncio.sleep(backoff(attempt, rng))  # a client's reconnect backoff


class RoomUser:
    def __init__(
        self,
        sim: Sim,
        room_id: str,
        user_id: str,
        role: str,
        token: str,
        *,
        interval: float,
        checklist_share: float,
        max_ops: int,
    ) -> None:
        self.sim = sim
        self.room_id = room_id
        self.user_id = user_id
        self.role = role
        self.token = token
        self.interval = interval
        self.checklist_share = checklist_share
        self.max_ops = max_ops
        self.rng = random.Random(f"{sim.rng.random()}")
        self.ws: ClientConnection | None = None
        self.server: Server | None = None
        self.epoch: str | None = None
        self.last_seq = 0
        self.view: list[tuple[int, str, str | None, str, str, str]] = []
        self.checklist = EventView()  # the documented rules (menteo_testkit)
        self.expect_checklist: tuple[int, list[dict[str, Any]]] | None = None
        self.presence: set[str] = set()  # who this client shows as online in the room
        self.outbox: dict[str, Pending] = {}
        self.acks: dict[str, int] = {}
        self.kinds: dict[str, str] = {}  # op id -> event type it should store
        self.refused: dict[str, str] = {}  # op id -> error code
        self.ops = 0
        self.welcomed = asyncio.Event()
        self.first_welcome: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.actor_task: asyncio.Task[None] | None = None
        # The last connection attempts (when, how long, where, how it ended): the report
        # shows them for the client that recovered last after a fault, to say where its
        # time went.
        self.attempts: deque[tuple[float, float, str, str]] = deque(maxlen=8)
        # When its last live socket ended and when the next one was welcomed: the time it
        # was away, which a drained process keeps short even when the drain is long.
        self.closed_at = 0.0
        self.welcomed_at = 0.0
        self.moving: asyncio.Task[bool] | None = None  # the next socket of a hand-off
        self.moved_at = 0.0  # when a hand-off last moved it (never without a live socket)
        self.move_took = 0.0  # that move: ``reconnect`` to the next socket's welcome
        # After a hand-off: (the next seq the new socket must bring, the last seq the old one
        # delivered). The new socket's events up to there are repeats, checked gap-free from
        # the ``since`` it was opened with, then dropped; None outside a hand-off.
        self.overlap: tuple[int, int] | None = None
        self.move_since = 0  # the ``since`` the hand-off's next socket was opened with

    # Connection ---------------------------------------------------------------------------
    def is_open(self) -> bool:
        return self.ws is not None and self.ws.state is State.OPEN

    def recovered(self, since: float) -> bool:
        """Live and caught up: open, at its room's highest acked seq, and every operation it
        made before ``since`` acked."""
        return (
            self.is_open()
            and self.last_seq >= self.sim.room_high[self.room_id]
            and not any(p.created < since for p in self.outbox.values())
        )

    def abort(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()

    async def run(self, start_delay: float) -> None:
        await asyncio.sleep(start_delay)  # clients arrive spread out, as in life
        self.actor_task = self.sim.spawn(self.actor(), f"actor {self.user_id}")
        await reconnecting(self.sim, self.rng, self._session)

    async def _session(self, server: Server) -> bool:
        """One socket, from connect to close; False (back off) if no welcome came, unless
        the server closed it with 1012 first: a process stopping while the join was under
        way, which the protocol's client retries at once (docs/protocol.md, resuming)."""
        started = time.monotonic()
        self.overlap = None  # a reconnect's events are checked as any others
        try:
            ws = await self._connect(server)
        except Exception as exc:
            self.sim.stats.connect_failures[f"room: {type(exc).__name__}"] += 1
            self._attempt(server, started, f"connect {exc}"[:60])
            return False
        try:
            welcome = orjson.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT))
        except Exception as exc:
            self.sim.stats.connect_failures[f"room welcome: {type(exc).__name__}"] += 1
            self._note_close(ws)
            ws.transport.abort()
            rcvd = ws.protocol.close_rcvd
            self._attempt(
                server, started, f"no welcome: {rcvd.code if rcvd else type(exc).__name__}"
            )
            return rcvd is not None and rcvd.code == 1012
        self._attempt(server, started, "welcome")
        self.welcomed_at = time.monotonic()
        self.ws, self.server = ws, server
        self.sim.stats.connects["room"] += 1
        self._welcome(welcome)
        if self.first_welcome is None:
            self.first_welcome = time.monotonic()
        self.welcomed.set()
        churn = self.sim.churn_later(lambda: self._close_current(), self.is_open)
        try:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._resend_unsent(ws)
            while True:
                with contextlib.suppress(websockets.ConnectionClosed):  # closed with an error
                    await self._read(ws)
                moved = await self._moved(ws)
                if moved is None:
                    break
                ws = moved  # handed off: the next socket is read from here on
        finally:
            if churn is not None:
                churn.cancel()
            if self.moving is not None:
                self.moving.cancel()
                self.moving = None
            self._note_close(ws)
            self.ws = None
            if self.server is not None and self.server is not server:
                # Moved: the balancer counts the socket on the server it moved to; the
                # caller releases the one this session started on.
                self.sim.release(self.server)
                self.sim.assigned[server.name] += 1
            self.server = None
            self.closed_at = time.monotonic()
            for pending in self.outbox.values():
                pending.sent_at = None
        return True

    async def _connect(self, server: Server) -> ClientConnection:
        url = f"{server.ws}/rooms/{self.room_id}/ws?token={self.token}&since={self.last_seq}"
        if self.epoch:
            url += f"&epoch={self.epoch}"
        if self.sim.handoff:
            url += "&handoff=1"
        return await websockets.connect(
            url,
            subprotocols=["menteo.v1.json"],  # type: ignore[list-item]
            compression=None,
            open_timeout=CONNECT_TIMEOUT,
            max_queue=None,
        )

    async def _close_current(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def _resend_unsent(self, ws: ClientConnection) -> None:
        """Send on ``ws`` what was not acked and is not on its way on a live socket."""
        for op_id, pending in list(self.outbox.items()):
            if pending.sent_at is not None or op_id in self.acks:
                continue
            pending.sent_at = time.monotonic()
            await ws.send(orjson.dumps(pending.frame).decode())
            self.sim.stats.resent_reconnect += 1

    async def _read(self, ws: ClientConnection) -> None:
        """Frames of ``ws`` until it closes. Once a hand-off moved this client to its next
        socket, the old one's remaining frames count for their events and acks only: the
        new welcome's presence list is newer than anything the old socket still holds."""
        async for data in ws:
            frame = orjson.loads(data)
            if frame.get("type") == "reconnect" and self.ws is ws:
                if self.moving is None and self.sim.handoff:
                    self.moving = asyncio.ensure_future(self._move(ws))
            elif self.ws is ws or "seq" in frame or frame.get("type") in ("ack", "error"):
                self._frame(frame)

    async def _moved(self, old: ClientConnection) -> ClientConnection | None:
        """After ``old`` closed: the socket a hand-off moved this client to, or None (the
        session ends; the client reconnects as after any close)."""
        if self.ws is old and self.moving is not None:
            await asyncio.wait((self.moving,))  # the server closed it before the move ended
        self.moving = None
        if self.ws is None or self.ws is old:
            return None
        self._note_close(old)  # the session's end notes the last socket's close
        self.overlap = (self.move_since + 1, self.last_seq)  # the old one's frames are applied
        return self.ws

    async def _move(self, old: ClientConnection) -> bool:
        """Asked to ``reconnect``: open the next socket (the balancer sends it to a process
        that stays) while ``old`` serves; once welcomed, switch to it and close ``old``."""
        server = self.sim.pick_server()
        started = time.monotonic()
        self.move_since = self.last_seq  # what ``_connect`` sends
        try:
            ws = await self._connect(server)
        except Exception as exc:
            self.sim.release(server)
            self.sim.stats.move_failures += 1
            self._attempt(server, started, f"move failed: {type(exc).__name__}")
            return False
        try:
            welcome = orjson.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT))
        except BaseException as exc:  # cancelled too (the session ended): not left open
            ws.transport.abort()
            self.sim.release(server)
            if not isinstance(exc, Exception):
                raise
            self.sim.stats.move_failures += 1
            self._attempt(server, started, f"move failed: {type(exc).__name__}")
            return False
        self._attempt(server, started, "moved")
        if self.ws is not old:  # the old one ended meanwhile and so did the session
            self.sim.release(server)
            await ws.close()
            return False
        self.sim.stats.moved += 1
        self.moved_at = time.monotonic()
        self.move_took = self.moved_at - started
        self.sim.stats.connects["room"] += 1
        if self.server is not None:
            self.sim.release(self.server)
        self.ws, self.server = ws, server
        self._welcome(welcome, since=self.move_since)
        for pending in self.outbox.values():  # acks of the old one may never come: resend
            pending.sent_at = None
        await self._resend_unsent(ws)
        await old.close()  # its remaining frames are read, then ``_session`` reads ``ws``
        return True

    def _attempt(self, server: Server, started: float, outcome: str) -> None:
        self.attempts.append((started, time.monotonic() - started, server.name, outcome))

    def _note_close(self, ws: ClientConnection) -> None:
        rcvd = ws.protocol.close_rcvd
        if rcvd is not None:
            label = str(rcvd.code) if rcvd.code == 1000 else f"{rcvd.code} {rcvd.reason}".strip()
            self.sim.stats.closes[label] += 1
            if rcvd.code in (4401, 4403, 4404, 1008, 1009):
                self.sim.stats.violation(f"{self.user_id}: closed with {rcvd.code} {rcvd.reason}")
        else:
            self.sim.stats.closes["no close frame"] += 1

    def _welcome(self, welcome: dict[str, Any], *, since: int | None = None) -> None:
        """``since``: what the socket was opened with (a hand-off's old socket may have
        delivered more meanwhile); by default the last seq applied, as at a reconnect."""
        stats = self.sim.stats
        since = self.last_seq if since is None else since
        if welcome.get("type") != "welcome":
            stats.violation(f"{self.user_id}: first frame is {welcome.get('type')}")
            return
        if self.epoch is not None and welcome["epoch"] != self.epoch:
            stats.violation(f"{self.user_id}: epoch changed {self.epoch} -> {welcome['epoch']}")
        self.epoch = welcome["epoch"]
        if not welcome["recovered"]:
            stats.violation(
                f"{self.user_id}: since={since} not recovered (room at {welcome['seq']})"
            )
        if welcome["seq"] < since:
            stats.violation(f"{self.user_id}: room went back {since} -> {welcome['seq']}")
        self.presence = {p["user_id"] for p in welcome["presence"]}
        self.expect_checklist = (welcome["seq"], welcome["checklist"]["items"])
        self._check_checklist()

    def _check_checklist(self) -> None:
        """Once the replay reaches the welcome's seq, our derived list must equal its list."""
        if self.expect_checklist is None or self.last_seq < self.expect_checklist[0]:
            return
        seq, items = self.expect_checklist
        self.expect_checklist = None
        if seq == self.last_seq and normalize_items(items) != normalize_items(
            self.checklist.ordered()
        ):
            self.sim.stats.violation(
                f"{self.user_id}: welcome checklist at seq {seq} differs from the events"
            )

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type", "")
        if "seq" in frame and (kind == "chat.message" or kind.startswith("checklist.")):
            self._event(frame)
        elif kind == "ack":
            self._ack(frame)
        elif kind == "presence.join":
            self.presence.add(frame["user_id"])
        elif kind == "presence.leave":
            self.presence.discard(frame["user_id"])
        elif kind == "presence.sync":
            self.presence = {p["user_id"] for p in frame["presence"]}
        elif kind == "error":
            self._error(frame)

    def _event(self, frame: dict[str, Any]) -> None:
        seq = frame["seq"]
        if self.overlap is not None:  # the new socket of a hand-off, repeating the old one's
            expected, until = self.overlap
            if seq <= until:
                if seq != expected:
                    self.sim.stats.violation(
                        f"{self.user_id}: hand-off's new socket went {expected - 1} -> {seq}"
                    )
                self.overlap = (seq + 1, until)
                return
            self.overlap = None  # past the old one's last: checked as any other
        if seq <= self.last_seq:
            self.sim.stats.violation(f"{self.user_id}: seq {seq} again (at {self.last_seq})")
            return
        if seq != self.last_seq + 1:
            self.sim.stats.violation(f"{self.user_id}: gap {self.last_seq} -> {seq}")
        author = frame["author"]["user_id"]
        data = {k: v for k, v in frame.items() if k not in ("type", "seq", "id", "author", "ts")}
        self.view.append((seq, frame["type"], frame["id"], author, canonical(data), frame["ts"]))
        self.last_seq = seq
        if seq > self.sim.room_high[self.room_id]:
            self.sim.room_high[self.room_id] = seq
        if frame["type"].startswith("checklist."):
            try:
                self.checklist.apply(frame)
            except (ViewError, KeyError) as exc:
                self.sim.stats.violation(f"{self.user_id}: seq {seq} does not apply: {exc}")
        if author != self.user_id:
            sent = self.sim.first_sent.pop((self.room_id, frame["id"]), None)
            if sent is not None and (self.first_welcome is None or sent < self.first_welcome):
                # Sent during the ramp, before this peer had ever connected: not a latency.
                self.sim.before_peer += 1
            elif sent is not None:
                took = time.monotonic() - sent
                self.sim.stats.delivery_latency.append(took)
                what = f"{frame['id']} to {self.user_id} (on {self.server.name if self.server else '?'})"
                entry = (took, sent - self.sim.t0, what)
                if len(self.sim.stats.slowest) < 10:
                    heapq.heappush(self.sim.stats.slowest, entry)
                else:
                    heapq.heappushpop(self.sim.stats.slowest, entry)
        self._check_checklist()

    def _ack(self, frame: dict[str, Any]) -> None:
        op_id, seq = frame["id"], frame["seq"]
        before = self.acks.get(op_id)
        if before is not None and before != seq:
            self.sim.stats.violation(f"{self.user_id}: {op_id} acked as {before} and {seq}")
        if before is None:
            self.acks[op_id] = seq
            if seq > self.sim.room_high[self.room_id]:
                self.sim.room_high[self.room_id] = seq
            sent = self.sim.first_sent.get((self.room_id, op_id))
            if sent is not None:
                self.sim.stats.ack_latency.append(time.monotonic() - sent)
        self.outbox.pop(op_id, None)

    def _error(self, frame: dict[str, Any]) -> None:
        code, op_id = frame.get("code", "?"), frame.get("id")
        self.sim.stats.errors[code] += 1
        if op_id is None or op_id not in self.outbox:
            return
        if code in ("unavailable", "rate_limited"):  # not stored: send it again
            self.outbox[op_id].sent_at = time.monotonic() - ACK_TIMEOUT + 0.5
            self.outbox[op_id].refused_unavailable = True
            self.sim.stats.resent_unavailable += 1
            return
        self.refused[op_id] = code  # a refusal the rules allow (e.g. verify after an untick)
        self.outbox.pop(op_id, None)

    # Load ----------------------------------------------------------------------------------
    async def actor(self) -> None:
        """Send an operation now and then; resend what stays unacked; end when the load has
        stopped and the outbox is empty."""
        await self.welcomed.wait()
        due = time.monotonic() + self.rng.expovariate(1 / self.interval)
        while True:
            now = time.monotonic()
            if self.sim.loading and self.ops < self.max_ops and now >= due:
                self._next_op()
                due = now + self.rng.expovariate(1 / self.interval)
            await self._resend_stale()
            if not self.sim.loading and not self.outbox:
                return
            wait = min(1.0, max(0.0, due - time.monotonic())) if self.sim.loading else 0.5
            await asyncio.sleep(wait)  # the load's pace: the next operation is due then

    async def _resend_stale(self) -> None:
        ws, now = self.ws, time.monotonic()
        if ws is None:
            return
        for pending in list(self.outbox.values()):
            if pending.sent_at is not None and now - pending.sent_at > ACK_TIMEOUT:
                pending.sent_at = now
                if pending.refused_unavailable:  # counted as resent after `unavailable`
                    pending.refused_unavailable = False
                else:
                    self.sim.stats.resent_timeout += 1
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(orjson.dumps(pending.frame).decode())

    def _next_op(self) -> None:
        self.ops += 1
        n = self.ops
        op_id = f"{self.user_id}.{n}"
        if self.rng.random() >= self.checklist_share:
            frame: dict[str, Any] = {
                "type": "chat.send",
                "id": op_id,
                "body": f"message {n} from {self.user_id}",
            }
            kind = "chat.message"
        else:
            frame = self._checklist_op(op_id, n)
            kind = frame["type"]
        self.kinds[op_id] = kind
        self.sim.stats.sent[kind] += 1
        self.sim.first_sent[(self.room_id, op_id)] = time.monotonic()
        pending = self.outbox[op_id] = Pending(frame)
        ws = self.ws
        if ws is not None:  # otherwise it goes out when we are back (a durable outbox)
            pending.sent_at = time.monotonic()
            task = asyncio.ensure_future(self._send(ws, frame))
            task.add_done_callback(lambda t: t.exception())

    async def _send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(orjson.dumps(frame).decode())

    def _checklist_op(self, op_id: str, n: int) -> dict[str, Any]:
        items = self.checklist.ordered()
        rng = self.rng
        if len(items) < 3 or (len(items) < 25 and rng.random() < 0.15):
            frame: dict[str, Any] = {
                "type": "checklist.add",
                "id": op_id,
                "item_id": f"{self.user_id}.i{n}",
                "title": f"step {n} by {self.user_id}",
            }
            if items and rng.random() < 0.5:
                frame["after"] = rng.choice([None, *(i["id"] for i in items)])
            return frame
        item = rng.choice(items)
        r = rng.random()
        done = [i for i in items if i["done"] and not i["verified"]]
        if self.role == "mentor" and done and r < 0.2:
            return {"type": "checklist.verify", "id": op_id, "item_id": rng.choice(done)["id"]}
        if r < 0.3:
            return {
                "type": "checklist.rename",
                "id": op_id,
                "item_id": item["id"],
                "title": f"step renamed by {self.user_id} ({n})",
            }
        if r < 0.4:
            others = [i["id"] for i in items if i["id"] != item["id"]]
            return {
                "type": "checklist.move",
                "id": op_id,
                "item_id": item["id"],
                "after": rng.choice([None, *others]),
            }
        return {
            "type": "checklist.toggle",
            "id": op_id,
            "item_id": item["id"],
            "done": not item["done"],
        }


# A notes editor ----------------------------------------------------------------------------


class NotesUser:
    """A pycrdt document kept across reconnects (like y-websocket's provider): after each
    reconnect the state-vector exchange sends the server whatever it lacks."""

    def __init__(self, sim: Sim, room_id: str, user_id: str, token: str, interval: float) -> None:
        self.sim = sim
        self.room_id = room_id
        self.user_id = user_id
        self.token = token
        self.interval = interval
        self.rng = random.Random(f"{sim.rng.random()}")
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("notes", type=Text)
        self.doc.observe(self._local_change)
        self.applying = False
        self.ws: ClientConnection | None = None
        self.server: Server | None = None
        self.synced = False  # the server's step 2 arrived on the current socket
        self.words = 0
        self.task: asyncio.Task[None] | None = None
        self.actor_task: asyncio.Task[None] | None = None
        sim.words_typed.setdefault(room_id, set())
        sim.words_deleted.setdefault(room_id, set())

    def is_open(self) -> bool:
        return self.ws is not None and self.ws.state is State.OPEN

    def abort(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()

    def _local_change(self, event: TransactionEvent) -> None:
        ws = self.ws
        if not self.applying and ws is not None:
            task = asyncio.ensure_future(self._send(ws, create_update_message(event.update)))
            task.add_done_callback(lambda t: t.exception())

    async def _send(self, ws: ClientConnection, data: bytes) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(data)

    async def run(self, start_delay: float) -> None:
        await asyncio.sleep(start_delay)  # clients arrive spread out, as in life
        self.actor_task = self.sim.spawn(self.actor(), f"actor {self.user_id}")
        await reconnecting(self.sim, self.rng, self._session)

    async def _session(self, server: Server) -> bool:
        try:
            ws = await websockets.connect(
                f"{server.ws}/rooms/{self.room_id}/notes?token={self.token}",
                compression=None,
                open_timeout=CONNECT_TIMEOUT,
                max_queue=None,
            )
        except Exception as exc:
            self.sim.stats.connect_failures[f"notes: {type(exc).__name__}"] += 1
            return False
        self.ws, self.server, self.synced = ws, server, False
        self.sim.stats.connects["notes"] += 1
        churn = self.sim.churn_later(ws.close, self.is_open)
        try:
            await ws.send(create_sync_message(self.doc))
            async for message in ws:
                assert isinstance(message, bytes)
                if message[0] != 0:
                    continue  # awareness
                self.applying = True
                try:
                    reply = handle_sync_message(message[1:], self.doc)
                finally:
                    self.applying = False
                if reply is not None:
                    await ws.send(reply)
                if message[1] == 1:
                    self.synced = True
        except websockets.ConnectionClosed:
            pass
        finally:
            if churn is not None:
                churn.cancel()
            rcvd = ws.protocol.close_rcvd
            label = "no close frame" if rcvd is None else f"{rcvd.code} {rcvd.reason}".strip()
            self.sim.stats.closes[f"notes {label}"] += 1
            if rcvd is not None and rcvd.code in (1007, 1008, 1009, 4413, 4401, 4403):
                self.sim.stats.violation(f"{self.user_id} notes: closed with {rcvd.code}")
            self.ws = self.server = None
            self.synced = False
        return True

    async def actor(self) -> None:
        """Type a word at a word boundary, or now and then delete a word (anyone's)."""
        for _ in range(self.sim.max_edits):  # bounded in count, and in time by the load
            await self.sim.pause(self.rng.expovariate(1 / self.interval))
            if not self.sim.loading:
                return
            text = str(self.text)
            words = text.split()
            if words and self.rng.random() < 0.15:
                word = self.rng.choice(words)
                index = _word_index(text, word)
                if index is not None:
                    del self.text[index : index + len(word) + 1]
                    self.sim.words_deleted[self.room_id].add(word)
                continue
            self.words += 1
            word = f"{self.user_id}.{self.words}"
            boundaries = [0, *(i + 1 for i, c in enumerate(text) if c == " ")]
            self.text.insert(self.rng.choice(boundaries), word + " ")
            self.sim.words_typed[self.room_id].add(word)


def _word_index(text: str, word: str) -> int | None:
    """Where ``word`` (followed by its space) starts as a whole word."""
    start = 0
    while True:
        index = text.find(word + " ", start)
        if index < 0:
            return None
        if index == 0 or text[index - 1] == " ":
            return index
        start = index + 1
