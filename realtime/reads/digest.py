"""The "since you left" digest: what other members did in a room after a seq.

Reads at most ``max_events`` events (the room's after ``since``, then the notes updates
after the time of the event at ``since``) and says ``truncated`` when there were more. Your
own actions never count; a later change by anyone undoes an earlier one by others (a step
someone ticked and you unticked is not "done"; a step added and removed while you were away
is neither added nor removed).

What a room's events between two seqs say is the same for every reader and never changes
(stored events are not rewritten), so it is read once into a ``Window`` and kept
(``Windows``); each reader's digest is assembled from it (their own doings left out), and
only the notes, which have a stream of their own, are read per digest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, select

from ..persistence.models import ChecklistItem
from ..persistence.rooms import notes_stream
from ..persistence.sql import Sql
from .queries import CHAT

ITEMS = ChecklistItem.__table__  # type: ignore[attr-defined]
WINDOWS_KEPT = 2048  # windows a process keeps (each a few authors and checklist events)
# ... and checklist events they hold in all (about 0.5 KiB each): a window spans everything
# since the reader's marker, so one who never reads makes ever longer ones of a busy room.
EVENTS_KEPT = 20_000

_EVENTS = Sql(
    "SELECT seq, type, author_id, author_name, "
    "CASE WHEN type LIKE 'checklist.%' THEN data END FROM event "
    "WHERE stream = :room AND seq > :since AND seq <= :last ORDER BY seq LIMIT :limit"
)
_TS = Sql("SELECT ts FROM event WHERE stream = :room AND seq = :seq")
_NOTES = Sql(
    "SELECT author_id, ts FROM event WHERE stream = :stream AND type = 'notes.update' "
    "ORDER BY seq DESC LIMIT :limit"
)
_NOTES_DROPPED = Sql("SELECT user_id FROM notes_author WHERE room_id = :room AND last_ts > :after")


@dataclass(frozen=True, slots=True)
class Window:
    """A room's events with ``since < seq <= last``, as any reader's digest needs them."""

    room_id: str
    since: int
    last: int
    since_ts: str  # when the event at ``since`` was stored ("" for 0)
    authors: dict[str, tuple[str, int, int]]  # chat authors: (name, messages, first seq)
    checklist: tuple[tuple[str, str, dict[str, Any]], ...]  # (op, author, data), in order
    titles: dict[str, str]  # stored titles of the steps the events name without one
    read: int  # events read
    truncated: bool

    def others(self, me: str) -> list[tuple[str, tuple[str, int, int]]]:
        return [(user, facts) for user, facts in self.authors.items() if user != me]

    def messages_by_others(self, me: str) -> int:
        return sum(facts[1] for _, facts in self.others(me))

    def checklist_by_others(self, me: str) -> bool:
        return any(author != me for _, author, _ in self.checklist)


class Windows:
    """The windows read lately (bounded), shared by the database reader threads."""

    def __init__(self, size: int = WINDOWS_KEPT, events: int = EVENTS_KEPT) -> None:
        self.size = size
        self.events = events
        self.kept: OrderedDict[tuple[str, int, int, int], Window] = OrderedDict()
        self.held = 0  # checklist events of the windows kept
        self.lock = threading.Lock()
        self.reads = 0  # windows read from the database

    def get(self, conn: Connection, room_id: str, since: int, last: int, limit: int) -> Window:
        key = (room_id, since, last, limit)
        with self.lock:
            window = self.kept.get(key)
            if window is not None:
                self.kept.move_to_end(key)
                return window
        window = read_window(conn, room_id, since, last, limit)
        with self.lock:
            self.reads += 1
            if key in self.kept or len(window.checklist) > self.events:
                return window  # read twice at once, or too big to keep
            self.kept[key] = window
            self.held += len(window.checklist)
            while len(self.kept) > self.size or self.held > self.events:
                self.held -= len(self.kept.popitem(last=False)[1].checklist)
        return window


def read_window(conn: Connection, room_id: str, since: int, last: int, limit: int) -> Window:
    rows = _EVENTS.rows(conn, room=room_id, since=since, last=last, limit=limit + 1)
    authors: dict[str, tuple[str, int, int]] = {}
    checklist: list[tuple[str, str, dict[str, Any]]] = []
    for seq, type_, author, name, raw in rows[:limit]:
        if type_ == CHAT:
            _, count, first = authors.get(author, ("", 0, seq))
            authors[author] = (name, count + 1, first)
        elif raw is not None:
            checklist.append((type_.removeprefix("checklist."), author, orjson.loads(raw)))
    since_ts = str(_TS.scalar(conn, room=room_id, seq=since) or "") if since > 0 else ""
    return Window(
        room_id,
        since,
        last,
        since_ts,
        authors,
        tuple(checklist),
        _stored_titles(conn, room_id, checklist),
        min(len(rows), limit),
        len(rows) > limit,
    )


def _stored_titles(
    conn: Connection, room_id: str, checklist: list[tuple[str, str, dict[str, Any]]]
) -> dict[str, str]:
    """Titles of the steps the events name but do not title (ticked, verified or removed
    without an add or rename in the window)."""
    told = {data["item"]["id"] for op, _, data in checklist if op == "add"}
    told |= {data["item_id"] for op, _, data in checklist if op == "rename" or data.get("title")}
    untold = sorted({data.get("item_id", "") for op, _, data in checklist if op != "add"} - told)
    if not untold:
        return {}
    rows = conn.execute(
        select(ITEMS.c.item_id, ITEMS.c.title).where(
            ITEMS.c.room_id == room_id, ITEMS.c.item_id.in_(untold)
        )
    )
    return {row.item_id: row.title for row in rows if row.title}


@dataclass(slots=True)
class _Steps:
    """The checklist part, replayed for one reader (``me``)."""

    me: str
    titles: dict[str, str] = field(default_factory=dict)  # the newest title seen per item
    added: dict[str, None] = field(default_factory=dict)  # by others, in order
    gone: set[str] = field(default_factory=set)  # removed by anyone
    removed: dict[str, None] = field(default_factory=dict)  # by others, in order
    done: dict[str, bool] = field(default_factory=dict)  # item -> the last toggle was others'
    verified: dict[str, bool] = field(default_factory=dict)

    def event(self, op: str, author: str, data: dict[str, Any]) -> None:
        other = author != self.me
        if op == "add":
            item = data["item"]["id"]
            self.titles[item] = data["item"]["title"]
            self.gone.discard(item)
            if other:
                self.added[item] = None
            return
        item = data.get("item_id", "")
        if op == "rename":
            self.titles[item] = data["title"]
            if data.get("verified") is False:  # the mentor's verification covered other words
                self.verified.pop(item, None)
        elif op == "toggle":
            self.done[item] = bool(data["done"]) and other
            if not data["done"]:
                self.verified.pop(item, None)
        elif op == "verify":
            self.verified[item] = bool(data["verified"]) and other
            if data.get("verified_title"):
                self.titles.setdefault(item, data["verified_title"])
        elif op == "remove":
            self.gone.add(item)
            if data.get("title"):
                self.titles.setdefault(item, data["title"])
            if other:
                self.removed[item] = None

    def lists(self, stored: dict[str, str]) -> dict[str, list[str]]:
        def title(item: str) -> str:  # a removed step's row keeps none: its id stands in
            return self.titles.get(item) or stored.get(item) or item

        gone = self.gone
        return {
            "added": [title(i) for i in self.added if i not in gone],
            "done": [title(i) for i, mine in self.done.items() if mine and i not in gone],
            "verified": [title(i) for i, mine in self.verified.items() if mine and i not in gone],
            "removed": [title(i) for i in self.removed if i not in self.added],
        }


def digest_of(conn: Connection, window: Window, user_id: str, max_events: int) -> dict[str, Any]:
    """``user_id``'s digest of ``window`` (the notes read now)."""
    steps = _Steps(user_id)
    for op, author, data in window.checklist:
        steps.event(op, author, data)
    others = window.others(user_id)
    by = sorted(others, key=lambda kv: (-kv[1][1], kv[0]))
    budget = max_events - window.read
    notes_by, notes_truncated = _notes_by(conn, window.room_id, user_id, window.since_ts, budget)
    return {
        "room_id": window.room_id,
        "from_seq": window.since,
        "to_seq": window.last,
        "messages": sum(facts[1] for _, facts in others),
        "by": [{"user_id": u, "name": name, "messages": n} for u, (name, n, _) in by],
        "checklist": steps.lists(window.titles),
        "notes": {"changed": bool(notes_by), "by": notes_by},
        "first_unread_seq": min((facts[2] for _, facts in others), default=None),
        "truncated": window.truncated or notes_truncated,
    }


def _notes_by(
    conn: Connection, room_id: str, user_id: str, after: str, budget: int
) -> tuple[list[str], bool]:
    """Who else stored a notes update after ``after`` (an ISO time): the stored updates,
    newest first, read up to ``budget``; and the authors of updates a compaction dropped
    (``notes_author``). True when more updates than the budget were newer."""
    authors: set[str] = set()
    truncated = False
    rows = _NOTES.each(conn, stream=notes_stream(room_id), limit=budget + 1)
    for read, (author, ts) in enumerate(rows):
        if ts <= after:
            break
        if read == budget:  # one more than the budget was newer
            truncated = True
            break
        authors.add(author)
    authors.update(user for (user,) in _NOTES_DROPPED.rows(conn, room=room_id, after=after))
    authors.discard(user_id)
    return sorted(authors), truncated


_LAST = Sql("SELECT last_seq FROM stream WHERE id = :room")


def digest_sync(
    conn: Connection,
    room_id: str,
    user_id: str,
    since: int,
    max_events: int,
    windows: Windows | None = None,
) -> dict[str, Any]:
    """The digest of ``room_id`` for ``user_id`` from ``since`` (clamped to the room's seqs)
    to the room's last seq."""
    last = int(_LAST.scalar(conn, room=room_id) or 0)
    since = max(0, min(since, last))
    if windows is None:
        window = read_window(conn, room_id, since, last, max_events)
    else:
        window = windows.get(conn, room_id, since, last, max_events)
    return digest_of(conn, window, user_id, max_events)
