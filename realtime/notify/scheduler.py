"""The notifier: after each commit it records who may need a notification, and at the due
time it judges and delivers them, each in a task of its own.

Nothing here runs on the live path but ``committed``, which only appends to a list: the
outbox rows are written by the flush task, the HTTP requests by delivery tasks (at most
``CONNECTIONS`` at once, each bounded by ``MENTEO_WEBHOOK_TIMEOUT``), so a receiver that
hangs delays its own notifications and nothing else.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from ..config import Settings
from ..faults import Faults, is_fatal
from ..metrics import Metrics
from ..persistence.database import Database
from ..persistence.events import StoredEvent, now_iso
from ..presence import Presence
from .attendance import Attendance, RedisAttendance
from .delivery import attempt
from .judge import judge_sync, refreshed_sync
from .outbox import (
    DONE,
    FAILED,
    PENDING,
    READY,
    RECOVER_WINDOW,
    ROOM_UNREAD,
    Db,
    Intent,
    Row,
    attempted_sync,
    cancel_many_sync,
    claim_sync,
    comment_intents,
    enqueue_sync,
    failed_sync,
    freeze_sync,
    pending_sync,
    postpone_sync,
    purge_sync,
    rebody_sync,
    renew_sync,
    room_intents,
    uncovered_sync,
)

log = logging.getLogger("menteo.notify")
T = TypeVar("T")

CHAT = "chat.message"
COMMENT = "feed.comment"
CONCURRENCY = 128  # rows claimed and not finished (judging, attempts in flight) per process
CLAIM = 64  # rows one claim takes at most
CONNECTIONS = 64  # to the receiver at once (the attempts beyond wait for one)
PRESENCE_CHECKS = 32  # Redis round trips at once (redis-py's pool refuses past its size)
# A claim waits until this many slots are free (or none is busy): one transaction for a
# batch of rows, not one per finished attempt.
CLAIM_AT = 32
# A claimed row is left alone for LEASE_TIMEOUTS attempts' timeouts plus LEASE_MARGIN: room
# for its wait for a connection (CONCURRENCY / CONNECTIONS) and its own attempt. A process
# that outlives the lease (a stalled event loop) may see the row sent twice: same id.
LEASE_TIMEOUTS = 3
LEASE_MARGIN = 5.0
MAX_QUEUED = 100_000  # committed messages waiting for the flush (then the oldest are dropped)
# Outbox writes at most once per this many seconds: a busy server's commits share one
# transaction (on SQLite it takes turns with the chat appender for the write lock). A row is
# due from its message's commit time, not from the write.
FLUSH_MOST = 0.25  # (at most a quarter of the delay: a row is written well before it is due)
# A message that folds into a row this process wrote, due well later, is written at most
# once per this many seconds (a busy room's members already have their rows): any time a
# fold lands is right (before the judge: in its body; while judging: judged again; after:
# a new pending row), so holding it costs latency only, never a notification.
FOLD_MOST = 5.0  # (at most an eighth of the delay)
HOUSEKEEPING = 5.0  # seconds between counting pending rows and purging old ones
KEEP = 86_400.0  # completed rows are kept at least this long (folding, the interval)


class Notifier:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        presence: Presence,
        attendance: Attendance,
        metrics: Metrics,
        faults: Faults,
    ) -> None:
        self.db = db
        self.settings = settings
        self.presence = presence
        self.attendance = attendance
        self.metrics = metrics
        self.faults = faults
        # (room, seq, author, commit time), (post, feed seq, commenter, commit time)
        self.messages: list[tuple[str, int, str, float]] = []
        self.comments: list[tuple[str, int, str, float]] = []
        self.flush_every = min(FLUSH_MOST, max(0.01, settings.notify_delay / 4))
        self.fold_every = max(self.flush_every, min(FOLD_MOST, settings.notify_delay / 8))
        self.folded_at = 0.0  # when held folds were last written
        # (user, scope) -> when the pending row this process wrote falls due (an estimate: a
        # fold into another process's row keeps that row's earlier due time).
        self.known: dict[tuple[str, str], float] = {}
        self.held: list[Intent] = []  # folds not written yet
        self.flush_wake = asyncio.Event()
        self.due_wake = asyncio.Event()
        self.hints: list[float] = []  # times a row of this process falls due (a heap)
        self.inflight: set[asyncio.Task[None]] = set()
        self.busy = 0  # claimed rows not finished yet (judged away, or attempted)
        # Row id -> the lease (``next_at``) this process last wrote for it, from its claim
        # until its outcome is recorded: renewed while held, so a row that waits long (for
        # a connection, a slow judge, an outcome not written yet) is not claimed again.
        self.leases: dict[str, float] = {}
        self.outcomes: list[tuple[str, str, float, str | None, str]] = []
        self.record_wake = asyncio.Event()
        self.checks = asyncio.Semaphore(PRESENCE_CHECKS)
        self.sending = asyncio.Semaphore(CONNECTIONS)
        self.tasks: list[asyncio.Task[None]] = []
        self.client: httpx.AsyncClient | None = None
        self.dropped = 0
        # Polling finds what other processes queued and what a restart left behind.
        self.poll = min(1.0, max(0.01, settings.notify_delay / 4))

    # The live path's one call -------------------------------------------------------
    def committed(self, events: list[StoredEvent]) -> None:
        now = time.time()
        for event in events:
            if event.type == CHAT:
                self.messages.append((event.stream, event.seq, event.author_id, now))
            elif event.type == COMMENT and "post_id" in event.data:
                post = str(event.data["post_id"])
                self.comments.append((post, event.seq, event.author_id, now))
            else:
                continue
            self.flush_wake.set()
        overflow = len(self.messages) + len(self.comments) - MAX_QUEUED
        if overflow > 0:
            self.dropped += overflow
            from_messages = min(overflow, len(self.messages))
            del self.messages[:from_messages]
            del self.comments[: overflow - from_messages]  # comments alone are bounded too
            log.error("webhook: the outbox cannot keep up; %d messages dropped", overflow)

    # Lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        # httpx logs every request at INFO, its URL included: the URL may hold a token.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        timeout = httpx.Timeout(self.settings.webhook_timeout)
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)
        await self.attendance.start()
        self.metrics.gauge("menteo_webhook_pending").set(0)
        # Once, and then done: not one of ``tasks``, which the watchdog expects to run on.
        self._spawn(self._recover())
        self.tasks = [
            asyncio.create_task(self._flush_loop(), name="menteo-notify-outbox"),
            asyncio.create_task(self._due_loop(), name="menteo-notify-delivery"),
            asyncio.create_task(self._record_loop(), name="menteo-notify-outcomes"),
        ]

    async def close(self) -> None:
        """Flush what was committed; attempts in flight stop (their lease runs out and
        whoever runs next retries them, under the same id)."""
        if self.messages or self.comments or self.held:
            with suppress(Exception):
                await self._flush(folds=True)
        inflight = list(self.inflight)
        for task in [*self.tasks, *inflight]:
            task.cancel()
        await asyncio.gather(*self.tasks, *inflight, return_exceptions=True)
        if self.outcomes:  # what was answered is recorded: not sent again after a restart
            with suppress(Exception):
                await self._write(self._recorder(self.outcomes))
        await self.attendance.close()
        if self.client is not None:
            await self.client.aclose()

    async def failed(self, limit: int) -> list[dict[str, Any]]:
        return await self.db.run(failed_sync, limit)

    # The outbox writer ----------------------------------------------------------------
    async def _recover(self) -> None:
        """What a process killed before its outbox write left out (outbox.py
        ``uncovered_sync``), queued like a fresh commit; once, on start."""
        since = datetime.fromtimestamp(time.time() - RECOVER_WINDOW, UTC)
        since_iso = since.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            messages, comments = await self.db.run(uncovered_sync, since_iso)
        except Exception as exc:
            if is_fatal(exc):
                raise
            self.faults.survived("notify", log, exc, "webhook: the start-up scan failed")
            return
        if messages or comments:
            log.info(
                "webhook: %d messages, %d comments queued again on start",
                len(messages),
                len(comments),
            )
            # Due the delay after the start at the earliest, not at once: the members are
            # reconnecting, and until then the judge would find everyone away.
            now = time.time()
            messages = [(r, seq, a, max(at, now)) for r, seq, a, at in messages]
            comments = [(p, seq, a, max(at, now)) for p, seq, a, at in comments]
            self.messages[:0], self.comments[:0] = messages, comments
            self.flush_wake.set()

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            # Held folds are written on time even when no message comes to wake the loop.
            wait = None if not self.held else self.folded_at + self.fold_every - time.time()
            with suppress(TimeoutError):
                async with asyncio.timeout(None if wait is None else max(0.0, wait)):
                    await self.flush_wake.wait()
            self.flush_wake.clear()
            try:
                started = time.monotonic()
                await self._flush()
                failures = 0
                await asyncio.sleep(max(0.0, started + self.flush_every - time.monotonic()))
            except Exception as exc:
                if is_fatal(exc):
                    raise
                failures += 1
                self.faults.survived("notify", log, exc, "webhook: outbox write failed")
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                self.flush_wake.set()

    async def _flush(self, *, folds: bool = False) -> None:
        messages, comments = self.messages, self.comments
        self.messages, self.comments = [], []
        delay = self.settings.notify_delay
        now = time.time()
        folds = folds or now - self.folded_at >= self.fold_every
        # Held only while the row is due later than two fold periods from now.
        horizon = now + 2 * self.fold_every
        known = {key: at for key, at in self.known.items() if at > horizon}
        held = self.held if folds else []

        def intents_of(conn: Db) -> list[Intent]:
            return room_intents(conn, messages) + comment_intents(conn, comments)

        try:
            # Members and authors from a read: a flush that only holds folds takes no write
            # transaction (on SQLite, none of the chat appender's turns).
            intents = await self.db.run(intents_of) if messages or comments else []
            later = [] if folds else [i for i in intents if (i.user_id, i.scope) in known]
            written = held + [i for i in intents if folds or (i.user_id, i.scope) not in known]
            due = float("inf")
            if written:
                ts = now_iso()
                due = await self._write(lambda conn: enqueue_sync(conn, written, delay, ts))
        except BaseException:
            self.messages[:0], self.comments[:0] = messages, comments  # kept for the retry
            raise
        if folds:
            self.held, self.folded_at = [], now
        self.held += later
        self.known = known
        for intent in written:
            key = (intent.user_id, intent.scope)
            self.known[key] = min(self.known.get(key, math.inf), intent.at + delay)
        if due != float("inf"):
            self._hint(due)

    # Due rows -------------------------------------------------------------------------
    def _hint(self, at: float) -> None:
        heapq.heappush(self.hints, at)
        self.due_wake.set()

    def _wait(self, now: float) -> float:
        while self.hints and self.hints[0] <= now:
            heapq.heappop(self.hints)
        soonest = self.hints[0] - now if self.hints else self.poll
        return max(0.0, min(self.poll, soonest))

    async def _due_loop(self) -> None:
        kept = 0.0
        failures = 0
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(self._wait(time.time())):
                    await self.due_wake.wait()
            self.due_wake.clear()
            try:
                now = time.time()
                if now - kept >= HOUSEKEEPING:
                    kept = now
                    await self._housekeeping(now)
                if self.leases and min(self.leases.values()) - now < self._lease() / 2:
                    await self._renew(now)
                free = min(CLAIM, CONCURRENCY - self.busy)
                if free < CLAIM_AT and self.busy:
                    continue  # a finishing attempt wakes us
                rows = await self._claim(now, free)
                failures = 0
            except Exception as exc:
                if is_fatal(exc):
                    raise
                failures += 1
                self.faults.survived("notify", log, exc, "webhook: claiming due rows failed")
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            if len(rows) == free:
                self.due_wake.set()  # more may be due
            # A row this process still holds (its lease ran out under a stalled loop) is
            # not sent twice from here: the claim renewed its lease, nothing more.
            fresh = [r for r in rows if r.id not in self.leases]
            lease = now + self._lease()
            self.leases.update((r.id, lease) for r in rows)
            if fresh:
                self.busy += len(fresh)
                self._spawn(self._process(fresh))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="menteo-notify-attempt")
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    def _release(self, n: int) -> None:
        self.busy -= n
        self.due_wake.set()

    def _lease(self) -> float:
        return LEASE_TIMEOUTS * self.settings.webhook_timeout + LEASE_MARGIN

    def _let_go(self, rows: Iterable[str]) -> None:
        for row_id in rows:
            self.leases.pop(row_id, None)

    async def _renew(self, now: float) -> None:
        """Every held row's lease moves on, where it is still the one this process wrote
        (an outcome recorded meanwhile, or a postponement, changed it: left alone)."""
        renewed = {row_id: now + self._lease() for row_id in self.leases}
        old = dict(self.leases)
        await self._write(lambda conn: renew_sync(conn, old, renewed))
        for row_id, lease in renewed.items():
            # Only where nothing moved the lease meanwhile (a freeze wrote its own): the
            # statement left those rows alone too.
            if self.leases.get(row_id) == old[row_id]:
                self.leases[row_id] = lease

    async def _claim(self, now: float, n: int) -> list[Row]:
        lease = now + self._lease()
        locking = not self.db.is_sqlite

        def claim(conn: Db) -> list[Row]:
            return claim_sync(conn, now, n, lease, locking)

        return await self._write(claim)

    async def _housekeeping(self, now: float) -> None:
        keep = max(KEEP, 2 * self.settings.notify_interval)
        await self._write(lambda conn: purge_sync(conn, now - keep, now))
        pending = await self.db.run(pending_sync)
        self.metrics.gauge("menteo_webhook_pending").set(pending)

    async def _process(self, rows: list[Row]) -> None:
        """One claim: the pending rows judged together (one read, one write), then an
        attempt per row to send, each in a task of its own."""
        ready = [r for r in rows if r.state == READY]
        pending = [r for r in rows if r.state == PENDING]
        try:
            if ready:  # frozen earlier: a retry, or left ready by a restart
                ready = await self._refresh(ready)
            if pending:
                ready += await self._judge(pending)
        except Exception as exc:
            if is_fatal(exc):
                raise
            # Left leased: judged again once the lease runs out, here or elsewhere.
            self.faults.survived("notify", log, exc, "webhook: judging %d rows failed", len(rows))
            self._let_go(r.id for r in rows)
            self._release(len(rows))
            return
        sending = {r.id for r in ready}
        self._let_go(r.id for r in rows if r.id not in sending)
        self._release(len(rows) - len(ready))
        for row in ready:
            self._spawn(self._attempt(row))

    async def _refresh(self, rows: list[Row]) -> list[Row]:
        """Frozen bodies with their message as it is now (a delete since erased it)."""
        found = await self.db.run(lambda conn: [refreshed_sync(conn, r) for r in rows])
        bodies = {r.id: b for r, b in zip(rows, found, strict=True) if b is not None}
        if bodies:
            await self._write(lambda conn: rebody_sync(conn, bodies))
        return [replace(r, body=bodies.get(r.id, r.body)) for r in rows]

    async def _present(self, row: Row) -> bool:
        async with self.checks:
            return await self._present_now(row)

    async def _present_now(self, row: Row) -> bool:
        if row.type == ROOM_UNREAD:
            if await self.presence.here(row.room_id or "", row.user_id):
                return True
            return await self.attendance.present(row.user_id, ("inbox",))
        return await self.attendance.present(row.user_id, ("feed",))

    async def _judge(self, rows: list[Row]) -> list[Row]:
        """Pending rows at their due time: each cancelled, postponed, or returned ready
        with its body frozen. A presence check that fails leaves its row leased."""
        now = time.time()
        ts = now_iso()
        interval = self.settings.notify_interval
        found = await asyncio.gather(*(self._present(r) for r in rows), return_exceptions=True)
        for result in found:
            if isinstance(result, BaseException):
                if is_fatal(result):
                    raise result
                self.faults.survived("notify", log, result, "webhook: presence unknown")
        present = [r for r, p in zip(rows, found, strict=True) if p is True]
        away = [r for r, p in zip(rows, found, strict=True) if p is False]
        verdicts = await self.db.run(
            lambda conn: [judge_sync(conn, r, now, interval) for r in away]
        )

        lease = now + self._lease()

        def apply(conn: Db) -> tuple[list[Row], list[float]]:
            frozen: list[Row] = []
            again: list[float] = []
            cancelled = present + [
                r for r, v in zip(away, verdicts, strict=True) if v.action == "cancel"
            ]
            # A message folded in meanwhile: that row stays pending, due now (judged again).
            cancel_many_sync(conn, cancelled, now, ts)
            if cancelled:
                again.append(now)
            for row, verdict in zip(away, verdicts, strict=True):
                if verdict.action == "cancel":
                    continue
                if verdict.action == "postpone":
                    postpone_sync(conn, row, verdict.at)
                    again.append(verdict.at)
                elif freeze_sync(conn, row, verdict.body, verdict.seq, now, ts, lease):
                    frozen.append(replace(row, state=READY, body=verdict.body))
                else:
                    again.append(now)
            return frozen, again

        frozen, again = await self._write(apply)
        for row in frozen:
            if row.id in self.leases:
                self.leases[row.id] = lease
        for at in again:
            self._hint(at)
        return frozen

    async def _attempt(self, row: Row) -> None:
        try:
            await self._deliver(row)
        except Exception as exc:
            self._let_go([row.id])  # no outcome to record: its lease runs out
            if is_fatal(exc):
                raise
            self.faults.survived("notify", log, exc, "webhook: notification %s failed", row.id)
        finally:
            self._release(1)

    async def _deliver(self, row: Row) -> None:
        assert self.client is not None and row.body is not None
        settings = self.settings
        async with self.sending:  # the timeout runs from the request, not the wait
            outcome = await attempt(
                self.client,
                settings.webhook_url,
                settings.webhook_secret,
                row.id,
                row.body.encode(),
                timeout=settings.webhook_timeout,
                attempts=row.attempts,
                max_attempts=settings.webhook_max_attempts,
                now=time.time(),
            )
        now = time.time()
        state, at = {"ok": (DONE, now), "failed": (FAILED, now)}.get(
            outcome.result, (READY, now + outcome.wait)
        )
        self.metrics.inc("menteo_webhook_deliveries_total", outcome.result)
        # Recorded by one task, many outcomes per transaction. Until then the row stays
        # leased: a kill -9 in between sends it again (at least once, same id).
        self.outcomes.append((row.id, state, at, outcome.error, now_iso()))
        self.record_wake.set()
        if state == READY:
            self._hint(at)
        elif state == FAILED:
            log.warning(
                "webhook %s (%s for user %s) failed after %d attempts: %s",
                row.id,
                row.type,
                row.user_id,
                row.attempts + 1,
                outcome.error,
            )

    async def _record_loop(self) -> None:
        failures = 0
        while True:
            await self.record_wake.wait()
            self.record_wake.clear()
            outcomes, self.outcomes = self.outcomes, []
            try:
                await self._write(self._recorder(outcomes))
                self._let_go(row_id for row_id, *_ in outcomes)
                failures = 0
            except Exception as exc:
                if is_fatal(exc):
                    raise
                self.outcomes[:0] = outcomes
                failures += 1
                self.faults.survived("notify", log, exc, "webhook: recording outcomes failed")
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                self.record_wake.set()

    @staticmethod
    def _recorder(
        outcomes: list[tuple[str, str, float, str | None, str]],
    ) -> Callable[[Db], None]:
        def record(conn: Db) -> None:
            for row_id, state, at, error, ts in outcomes:
                attempted_sync(conn, row_id, state, at, error, ts)

        return record

    async def _write(self, fn: Callable[[Db], T]) -> T:
        """A write transaction: on SQLite on the appender's thread, taking turns with the
        chat appends (waiting for the lock would stall them)."""
        if self.db.is_sqlite:
            return await self.db.write_sqlite(fn)
        async with self.db.write() as conn:
            return await conn.run_sync(fn)


def create_notifier(
    settings: Settings, db: Database, presence: Presence, metrics: Metrics, faults: Faults
) -> Notifier | None:
    """None without ``MENTEO_WEBHOOK_URL``."""
    if not settings.webhook_url:
        return None
    attendance = (
        RedisAttendance(settings.redis_url, settings.presence_ttl, faults)
        if settings.redis_url
        else Attendance()
    )
    return Notifier(db, settings, presence, attendance, metrics, faults)
