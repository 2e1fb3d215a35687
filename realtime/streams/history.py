"""A stream's history: everything a socket or a page reads of what came before now.

- ``resume``: the one rule that turns a client's ``since``/``epoch`` into where it resumes
  (the room socket, the feed socket and the event stream all ask it); ``resume_id`` and
  ``parse_resume_id``: the same as one ``EPOCH:SEQ`` value (the event stream's ids).
- ``Replay``: the events after a seq, a page at a time (a resume's catch-up, the hub's
  gap fill, a notes document's load).
- ``Recent`` and ``newest_json``: the newest N events of some types, kept by the hub in
  step with delivery (chat edits and deletes applied to them) and read from the database
  only when the hub cannot tell them all (the room welcome's history).
- ``page_before``: the page of events of some types before a seq (REST history pages).

The database is the truth: every answer here equals what a read of it would give.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.chat import MESSAGE, changed_frame
from ..persistence.database import Database
from ..persistence.events import StoredEvent, page_before_sync, replay, replay_sync
from ..protocol import JSON

# The resume rule -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a (re)connecting client goes on from.

    ``last``: the stream's seq when it was read. ``start``: the seq to replay after, or
    None when ``since`` cannot be honoured (the client gets the present instead).
    """

    last: int
    start: int | None

    @property
    def recovered(self) -> bool:
        """Every event after the client's ``since`` will reach it."""
        return self.start is not None

    @property
    def cursor(self) -> int:
        """The seq the connection is past once welcomed: events after it are its to get."""
        return self.last if self.start is None else self.start


def resume(since: str | None, epoch: str | None, our_epoch: str, last: int) -> Resume:
    """``since`` is honoured when it is a seq this stream has reached (0..last) of this
    database: an ``epoch`` other than ours (another database, a restore) resumes nothing.
    Anything else (absent, empty, not a number) is no resume, never an error."""
    if since is None:
        return Resume(last, None)
    try:
        value = int(since)
    except ValueError:
        return Resume(last, None)
    if value < 0 or value > last or (epoch and epoch != our_epoch):
        return Resume(last, None)
    return Resume(last, value)


def resume_id(epoch: str, seq: int) -> str:
    """A resume point as one value, ``EPOCH:SEQ`` (the event stream's ids)."""
    return f"{epoch}:{seq}"


def parse_resume_id(value: str | None) -> tuple[str | None, str | None]:
    """``(since, epoch)`` from ``EPOCH:SEQ``, or from a bare ``SEQ`` (ids sent before the
    epoch was: no epoch, accepted as before)."""
    if value is None:
        return None, None
    epoch, colon, seq = value.rpartition(":")
    return seq, (epoch if colon else None)


# The events after N ----------------------------------------------------------------------


class Replay:
    """A stream's events after a seq, oldest first, ``page`` at a time.

    The caller passes the seq to go on after with each read (what it has handled, which
    may be ahead of the page it got); ``done`` once a page came back short: the database
    held no more when it was read.
    """

    __slots__ = ("done", "page", "stream")

    def __init__(self, stream: str, page: int) -> None:
        self.stream = stream
        self.page = page
        self.done = False

    async def next(self, db: Database, after: int) -> list[StoredEvent]:
        """The next page, read in one trip to the database."""
        return self._seen(await db.run(replay_sync, self.stream, after, self.page))

    async def next_in(self, conn: AsyncConnection, after: int) -> list[StoredEvent]:
        """The next page on ``conn``, for a caller reading more in the same transaction."""
        return self._seen(await replay(conn, self.stream, after, self.page))

    def _seen(self, events: list[StoredEvent]) -> list[StoredEvent]:
        self.done = len(events) < self.page
        return events


# The newest N of these types -------------------------------------------------------------


class Recent:
    """A stream's newest events of some types, JSON-encoded, kept in step with delivery.

    ``complete``: no event of those types at or before the hub's last seq is missing (the
    database had no more when it was seeded, and none has been evicted since).
    """

    __slots__ = ("complete", "items", "types")

    def __init__(
        self, types: frozenset[str], limit: int, items: Iterable[tuple[int, str]], complete: bool
    ) -> None:
        self.types = types
        self.items: deque[tuple[int, str]] = deque(items, maxlen=limit)
        self.complete = complete

    def add(self, seq: int, text: str) -> None:
        if len(self.items) == self.items.maxlen:
            self.complete = False
        self.items.append((seq, text))

    def change(self, event: StoredEvent) -> None:
        """Apply a ``chat.edited`` or ``chat.deleted`` to the kept message it names, as the
        database's row was in the event's transaction: a welcome built from what is kept
        never shows a body its room has erased."""
        target = event.data.get("target")
        if MESSAGE not in self.types:
            return
        for n, (seq, text) in enumerate(self.items):
            if seq == target:
                try:
                    frame = changed_frame(orjson.loads(text), event.type, event.data, event.ts)
                    self.items[n] = (seq, json_text(frame))
                except Exception:
                    # Never keep what may be erased: welcomes read the database instead.
                    self.items.clear()
                    self.complete = False
                    raise
                return

    def snapshot(self, through: int) -> RecentSnapshot:
        """What a reader in another thread may hold: ``through`` is the hub's last seq."""
        return through, tuple(self.items), self.complete


RecentSpec = tuple[tuple[str, ...], int]  # (event types, how many)

# What a welcome needs of the hub's recent events: (the hub's last seq, (seq, JSON) pairs
# oldest first, complete). Immutable, so it may be read in the database thread.
RecentSnapshot = tuple[int, tuple[tuple[int, str], ...], bool]


def seed_recent(conn: Connection, stream: str, spec: RecentSpec, last: int) -> Recent:
    """The newest events of ``spec`` up to ``last``, read when the hub first subscribes:
    it delivers every later one, so the kept events stay exactly the database's newest."""
    types, limit = spec
    events, has_more = page_before_sync(conn, stream, types, last + 1, limit)
    items = [(e.seq, json_text(e.frame())) for e in events]
    return Recent(frozenset(types), limit, items, not has_more)


def history_from(recent: RecentSnapshot | None, last: int, limit: int) -> list[str] | None:
    """The newest ``limit`` kept frames up to ``last`` from the hub, or None if it cannot
    tell them all. A kept message is as of the hub's last seq (``through`` >= ``last``): a
    change after ``last`` is shown already, and its event follows the welcome, which a
    client applying events in order takes as a no-op."""
    if recent is None:
        return None
    through, items, complete = recent
    if through < last:  # the hub has not yet seen every event up to last
        return None
    upto = [text for seq, text in items if seq <= last]
    if len(upto) >= limit:
        return upto[len(upto) - limit :]
    return upto if complete else None


def newest_json(
    conn: Connection,
    stream: str,
    types: Sequence[str],
    last: int,
    limit: int,
    recent: RecentSnapshot | None,
) -> list[str]:
    """The newest ``limit`` events of ``types`` up to ``last`` as JSON frames, oldest first:
    the hub's kept ones when they tell them all, else the database's (``conn``)."""
    cached = history_from(recent, last, limit)
    if cached is not None:
        return cached
    # The hub is behind the database (or keeps nothing): read it.
    events = page_before_sync(conn, stream, types, last + 1, limit)[0]
    return [json_text(e.frame()) for e in events]


def json_text(frame: dict[str, Any]) -> str:
    encoded = JSON.encode(frame)
    return encoded if isinstance(encoded, str) else encoded.decode()


# The page before N -----------------------------------------------------------------------


async def page_before(
    db: Database, stream: str, types: Sequence[str], before: int | None, limit: int
) -> tuple[list[StoredEvent], bool]:
    """The newest ``limit`` events of ``types`` before ``before`` (None: the newest),
    oldest first, and whether older ones exist."""
    return await db.run(page_before_sync, stream, types, before, limit)
