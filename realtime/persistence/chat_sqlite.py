"""Chat changes on SQLite: read what a batch names, write what it decided, erase.

Run inside the appending transaction (the appender's thread, the reducer batches' thread or
SQLAlchemy's connection through ``SaSql``), after the batch's events are inserted, so a
change may name a message of the same batch. Erasing: the message row and its edits are
rewritten, its index row deleted and the shard merged (``optimize``), with
``secure_delete`` on every writing connection zeroing the freed bytes; the WAL, which still
holds the old pages, is truncated after the commit (``Database.erase_wal``).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from .chat import ERASED_EDIT, ChatState, Message, changed_streams, wanted
from .events import NewEvent
from .search_sqlite import Sql, doc_id, marks, shard


def load(sql: Sql, items: Sequence[NewEvent]) -> ChatState:
    """The messages the batch's changes and replies name, and whether each is indexed."""
    state = ChatState()
    index = marks(sql, changed_streams(items))
    state.index_nums = {stream: num for stream, (num, _) in index.items()}
    for stream, seq in wanted(items):
        row = sql.execute(
            "SELECT type, author_id, data, ts FROM event WHERE stream = ? AND seq = ?",
            (stream, seq),
        ).fetchone()
        if row is None:
            continue
        upto = index.get(stream, (0, 0))[1]
        type_, author_id, data, ts = row
        state.found[(stream, seq)] = Message(
            stream, seq, type_, author_id, orjson.loads(data), ts, indexed=seq <= upto
        )
    return state


def save(sql: Sql, state: ChatState) -> None:
    for message in state.changed:
        sql.execute(
            "UPDATE event SET data = ? WHERE stream = ? AND seq = ?",
            (orjson.dumps(message.data).decode(), message.stream, message.seq),
        )
    for message in state.deleted:
        erased = orjson.dumps({"target": message.seq, **ERASED_EDIT}).decode()
        sql.execute(
            "UPDATE event SET data = ? WHERE stream = ? AND type = 'chat.edited' AND seq > ? "
            "AND json_extract(data, '$.target') = ?",
            (erased, message.stream, message.seq, message.seq),
        )
    _reindex(sql, state.changed, state.index_nums)


def _reindex(sql: Sql, changed: list[Message], nums: dict[str, int]) -> None:
    merge: set[str] = set()
    for message in changed:
        if not message.indexed:
            continue  # indexed later, as it is then
        num = nums[message.stream]
        table, rowid = shard(num), doc_id(num, message.seq)
        if message.data.get("deleted"):
            sql.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
            merge.add(table)
        else:
            sql.execute(
                f"UPDATE {table} SET body = ? WHERE rowid = ?", (message.data["body"], rowid)
            )
    for table in sorted(merge):
        # FTS5 (3.40) deletes by marker: the words stay in older segments until merged.
        sql.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
