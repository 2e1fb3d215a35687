"""Statements of the hot read paths (a room welcome, a room list), run with the least
overhead the database allows.

Through SQLAlchemy every execution costs its compile-cache lookup and result machinery:
measured here about 70 µs a statement for a prepared ``text()`` and 220 µs for a Core
``select`` built per call, against 10 µs on the ``sqlite3`` connection itself, and a join
storm runs several per welcome. On SQLite a ``Sql`` runs on the DB-API connection under
the SQLAlchemy connection (``sqlite3`` takes the same ``:name`` parameters), inside its
transaction, so the reads of one ``Database.run`` still see one snapshot; elsewhere it is
a ``text()`` prepared once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, TextClause, text


class Sql:
    __slots__ = ("sql", "text")

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.text: TextClause = text(sql)

    def rows(self, conn: Connection, **params: Any) -> list[Any]:
        """Every row, as tuples (read by position)."""
        return list(self.each(conn, **params))

    def each(self, conn: Connection, **params: Any) -> Iterator[Any]:
        """The rows one by one: on SQLite a caller that stops early reads no further."""
        raw = conn.connection.dbapi_connection
        if isinstance(raw, sqlite3.Connection):  # the reader thread's (not aiosqlite's)
            if not conn.in_transaction():
                conn.begin()  # BEGIN (the engine's hook): one read snapshot for the call
            return iter(raw.execute(self.sql, params))
        return iter(conn.execute(self.text, params))

    def scalar(self, conn: Connection, **params: Any) -> Any:
        rows = self.rows(conn, **params)
        return rows[0][0] if rows else None
