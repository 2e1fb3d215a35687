"""Chat changes on a SQLAlchemy connection (``append_batch``, the path without a fast
appender): the same reads and writes as the appenders', through its driver."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from . import chat_pg, chat_sqlite
from .chat import ChatState
from .events import NewEvent
from .search_sqlite import SaSql


async def load(conn: AsyncConnection, items: Sequence[NewEvent]) -> ChatState:
    if conn.dialect.name == "sqlite":

        def read(sync: Connection) -> ChatState:
            return chat_sqlite.load(SaSql(sync), items)

        return await conn.run_sync(read)
    return await chat_pg.load(await _driver(conn), items)


async def save(conn: AsyncConnection, state: ChatState) -> None:
    if conn.dialect.name == "sqlite":
        await conn.run_sync(lambda sync: chat_sqlite.save(SaSql(sync), state))
        return
    await chat_pg.save(await _driver(conn), state)


async def _driver(conn: AsyncConnection) -> asyncpg.Connection:
    """asyncpg's connection under SQLAlchemy's, inside the transaction SQLAlchemy began
    (the batch's first statements went through SQLAlchemy)."""
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver
