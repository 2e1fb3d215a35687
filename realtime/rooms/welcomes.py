"""The welcome's reads, made once for every room socket joining in the same turn of the loop.

A reconnect storm (a process killed or restarted: its clients all arrive at another at
once) brings hundreds of joins to one process within a second. Read alone, each welcome
took a pooled connection and five round trips (BEGIN, the room's seq, its checklist, the
read markers, ROLLBACK), and held the connection across as many turns of a loop made late
by the other joins. Asked together, the joins of one turn share one snapshot: the rooms'
seqs, checklists and markers in one statement each, then what is the reader's own (the
unread count and digest, history for a client that cannot resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from ..checklist.store import load_checklist_sync, load_checklists_sync
from ..persistence.database import Database
from ..persistence.events import seqs_sync
from ..persistence.turns import TurnReads
from ..reads.digest import Windows
from ..reads.queries import markers_of_sync, markers_sync
from ..reads.welcome import welcome_reads_sync
from ..streams.history import RecentSnapshot, Resume, newest_json, resume

CHAT_TYPES = ("chat.message",)

# The members, the reader (None: a service), the digest's bound, the windows read lately.
Reader = tuple[list[str], str | None, int, Windows]
Welcome = tuple[Resume, list[str], dict[str, Any], dict[str, Any]]


@dataclass(slots=True)
class Ask:
    room_id: str
    since: str | None
    epoch: str | None
    recent: RecentSnapshot | None  # the hub's kept chat: history without a read
    reader: Reader


class WelcomeReads:
    """The welcomes asked for during a turn of the loop, read together (``TurnReads``)."""

    __slots__ = ("db", "history_limit", "turns")

    def __init__(self, db: Database, history_limit: int) -> None:
        self.db = db
        self.history_limit = history_limit
        self.turns: TurnReads[Ask, Welcome] = TurnReads(db, self._read_many, snapshot=True)

    async def read(
        self,
        room_id: str,
        since: str | None,
        epoch: str | None,
        recent: RecentSnapshot | None,
        reader: Reader,
    ) -> Welcome:
        """One snapshot: the room's seq, where to resume, the checklist exactly as of that
        seq and the read state; without a resume, the history (JSON-encoded frames)."""
        return await self.turns.read(Ask(room_id, since, epoch, recent, reader))

    def _read_many(self, conn: Connection, asks: list[Ask]) -> list[Welcome]:
        return _reads(conn, asks, self.db.epoch, self.history_limit)


def _reads(conn: Connection, asks: list[Ask], our_epoch: str, history_limit: int) -> list[Welcome]:
    rooms = sorted({ask.room_id for ask in asks})
    lasts = seqs_sync(conn, rooms)
    if len(rooms) == 1:  # statements prepared once (persistence/sql.py)
        room = rooms[0]
        lists = {room: load_checklist_sync(conn, room)}
        markers = {room: markers_sync(conn, room)}
    else:
        lists = load_checklists_sync(conn, set(rooms))
        markers = markers_of_sync(conn, rooms)
    checklists = {room: checklist.snapshot() for room, checklist in lists.items()}
    welcomes: list[Welcome] = []
    for ask in asks:
        room = ask.room_id
        last = lasts.get(room, 0)
        resumed = resume(ask.since, ask.epoch, our_epoch, last)
        history: list[str] = []
        if not resumed.recovered:
            history = newest_json(conn, room, CHAT_TYPES, last, history_limit, ask.recent)
        members, user_id, max_events, windows = ask.reader
        read, unread, digest = welcome_reads_sync(
            conn, room, members, user_id, last, max_events, windows, markers.get(room, {})
        )
        reads = {"read": read, "unread": unread, "digest": digest}
        welcomes.append((resumed, history, checklists[room], reads))
    return welcomes
