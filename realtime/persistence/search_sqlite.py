"""Chat search on SQLite: FTS5, in 128 tables of rooms, indexed when searched.

- **Shards.** A room gets a number (``chat_index.num``) when first indexed; its messages go
  to ``chat_fts_{num % 128}`` with rowid ``num << 32 | seq``, so one room's messages are one
  rowid range that FTS5 seeks to (``rowid BETWEEN``), and a delete rewrites (``optimize``)
  one shard, not the whole index. FTS5 in SQLite 3.40 keeps a deleted row's words in its
  older segments (a delete only adds a marker) until they are merged; ``optimize`` merges
  them away, and ``secure_delete`` (set on every writing connection) zeroes what is freed.
  128 shards: a delete merges 1/128 of the index (its ack, and the process's other writes
  meanwhile, wait for it); the schema holds 640 tables, which an empty database file and
  each new connection's first statement pay for (about 2.5 MB; about 2 ms).
- **Indexed when searched.** Appending a chat message writes nothing here: tokenizing in the
  appending transaction cost 3 µs (one word) to 20 µs (ten words) per message, 5-25% of the
  durable chat path on one core. A search first brings its rooms' index up to the room's
  seq (``catch_up``, in the appender's thread, in steps of ``CHUNK`` seqs), then reads.
  Edits and deletes of a message already indexed change the index in their own
  transaction (``chat_sqlite.save``); one not yet indexed is indexed as it is then.

Every function takes a ``Sql``: a ``sqlite3.Connection``, or ``SaSql`` over SQLAlchemy's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection

from .search_base import CHUNK, Hit

SHARDS = 128  # a delete merges one: 1/128 of the index (about 15 ms at 1M messages)
SEQ_BITS = 32
MAX_SEQ = (1 << SEQ_BITS) - 1  # a room's messages past this seq are not indexed
TOKENIZE = "porter unicode61 remove_diacritics 2"
SNIPPET_TOKENS = 16


class Sql(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...


class SaSql:
    """A SQLAlchemy connection with ``sqlite3``'s ``execute`` (qmark parameters)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        return self.conn.exec_driver_sql(sql, tuple(params) if params else None)


def reader(conn: Connection) -> Sql:
    """The ``sqlite3`` connection under a SQLAlchemy one when there is one (a search runs
    dozens of small statements: SQLAlchemy's own cost per statement would be most of it),
    in one read transaction; else ``SaSql``."""
    raw = conn.connection.driver_connection
    if isinstance(raw, sqlite3.Connection):
        if not raw.in_transaction:
            raw.execute("BEGIN")  # one snapshot; SQLAlchemy rolls it back on release
        return raw
    return SaSql(conn)


def shard(num: int) -> str:
    return f"chat_fts_{num % SHARDS:03d}"


def doc_id(num: int, seq: int) -> int:
    return (num << SEQ_BITS) + seq


def marks(sql: Sql, streams: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Each indexed stream's number and the seq its index reaches."""
    if not streams:
        return {}
    rows = sql.execute(
        f"SELECT stream, num, upto FROM chat_index WHERE stream IN ({_marks(streams)})",
        list(streams),
    )
    return {s: (num, upto) for s, num, upto in rows.fetchall()}


def behind(sql: Sql, streams: Sequence[str]) -> list[str]:
    """The streams whose index does not reach their last seq (a read: no lock)."""
    if not streams:
        return []
    rows = sql.execute(
        "SELECT s.id FROM stream s LEFT JOIN chat_index c ON c.stream = s.id "
        f"WHERE s.id IN ({_marks(streams)}) AND coalesce(c.upto, 0) < s.last_seq",
        list(streams),
    )
    return sorted(r[0] for r in rows.fetchall())


def room_access(sql: Sql, room_id: str, user_id: str | None) -> bool | None:
    if sql.execute("SELECT 1 FROM room WHERE id = ?", (room_id,)).fetchone() is None:
        return None
    if user_id is None:
        return True
    row = sql.execute(
        "SELECT 1 FROM member WHERE room_id = ? AND user_id = ?", (room_id, user_id)
    ).fetchone()
    return row is not None


def member_rooms(sql: Sql, user_id: str) -> list[str]:
    rows = sql.execute("SELECT room_id FROM member WHERE user_id = ?", (user_id,)).fetchall()
    return sorted(r[0] for r in rows)


def catch_up(sql: Sql, streams: Sequence[str]) -> bool:
    """Index up to ``CHUNK`` seqs of each stream (inside the caller's write transaction);
    True while some stream is still behind."""
    more = False
    for stream in streams:
        sql.execute(
            "INSERT OR IGNORE INTO chat_index (stream, num, upto) "
            "SELECT ?, coalesce(max(num), 0) + 1, 0 FROM chat_index",
            (stream,),
        )
        num, upto = marks(sql, [stream])[stream]
        last = sql.execute("SELECT last_seq FROM stream WHERE id = ?", (stream,)).fetchone()[0]
        last = min(last, MAX_SEQ)
        top = min(last, upto + CHUNK)
        if top <= upto:
            continue
        sql.execute(
            f"INSERT INTO {shard(num)} (rowid, body) "
            "SELECT ? + seq, json_extract(data, '$.body') FROM event "
            "WHERE stream = ? AND type = 'chat.message' AND seq > ? AND seq <= ? "
            "AND json_extract(data, '$.deleted') IS NULL ORDER BY seq",
            (doc_id(num, 0), stream, upto, top),
        )
        sql.execute("UPDATE chat_index SET upto = ? WHERE stream = ?", (top, stream))
        more = more or top < last
    return more


def find(sql: Sql, streams: Sequence[str], match: str, before: int | None, limit: int) -> list[Hit]:
    """The newest ``limit`` messages of ``streams`` matching ``match`` (an FTS5 query), with
    seq below ``before``: in one stream by seq, across streams by ``ts``. FTS5 walks each
    stream's rowid range backwards, scoring and making snippets on the way (a walk's setup
    costs more than the snippets of its page: one walk per stream, no second one)."""
    found: list[tuple[str, int, float, str]] = []  # stream, seq, score, snippet
    high = min(before if before is not None else MAX_SEQ + 1, MAX_SEQ + 1)
    for stream, (num, _) in marks(sql, streams).items():
        table, base = shard(num), doc_id(num, 0)
        rows = sql.execute(
            f"SELECT rowid - ?, -bm25({table}), "
            f"snippet({table}, 0, '«', '»', '…', {SNIPPET_TOKENS}) FROM {table} "
            f"WHERE {table} MATCH ? AND rowid > ? AND rowid < ? ORDER BY rowid DESC LIMIT ?",
            (base, match, base, base + high, limit),
        ).fetchall()
        found.extend((stream, seq, score, snippet) for seq, score, snippet in rows)
    hits = _messages(sql, found)
    hits.sort(key=lambda h: (h.seq,) if len(streams) == 1 else (h.ts, h.seq), reverse=True)
    return hits[:limit]


def _messages(sql: Sql, found: list[tuple[str, int, float, str]]) -> list[Hit]:
    """The found messages as stored now (a deleted one is never indexed; skipped anyway)."""
    by_stream: dict[str, dict[int, tuple[float, str]]] = {}
    for stream, seq, score, snippet in found:
        by_stream.setdefault(stream, {})[seq] = (score, snippet)
    out = []
    for stream, scored in by_stream.items():
        seqs = sorted(scored)
        rows = sql.execute(
            "SELECT seq, client_id, author_id, author_name, data, ts FROM event "
            f"WHERE stream = ? AND seq IN ({_marks(seqs)})",
            [stream, *seqs],
        ).fetchall()
        for seq, client_id, author_id, author_name, data, ts in rows:
            message = orjson.loads(data)
            if not message.get("deleted"):
                score, snippet = scored[seq]
                out.append(
                    Hit(stream, seq, client_id, author_id, author_name, message, ts, snippet, score)
                )
    return out


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


# The schema (the migration that adds search, and tests) ---------------------------------


def create_statements() -> list[str]:
    return [
        f"CREATE VIRTUAL TABLE {shard(n)} USING fts5(body, tokenize = '{TOKENIZE}')"
        for n in range(SHARDS)
    ]


def drop_statements() -> list[str]:
    return [f"DROP TABLE IF EXISTS {shard(n)}" for n in range(SHARDS)]
