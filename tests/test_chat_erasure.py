"""A deleted chat message is erased, not hidden: after the ack its text (and every edit of it)
is in no answer, no replay, no search, and nowhere in the database: not in the SQLite file
or its WAL (read as bytes), not in any PostgreSQL table."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import make_url, text

from menteo_testkit.database import plain_dsn
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server
from tests.test_chat_changes import MEMBERS, answer, delete, edit, messages


def canary() -> str:
    return "canary" + uuid.uuid4().hex  # one word, as an index keeps it (lower case)


async def search(server: Running, token: str, path: str, q: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            server.url + path, params={"q": q}, headers={"authorization": "Bearer " + token}
        )
    assert resp.status_code == 200, resp.text
    results: list[dict[str, Any]] = resp.json()["results"]
    return results


def sqlite_bytes(url: str) -> bytes:
    path = Path(str(make_url(url).database))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def postgres_text(url: str) -> str:
    """Every text, JSON and tsvector value of every table, as one string."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN "
            "('text', 'character varying', 'json', 'jsonb', 'tsvector')"
        )
        parts = []
        for table, column in columns:
            rows = await conn.fetch(f'SELECT "{column}"::text FROM "{table}"')
            parts.extend(str(r[0]) for r in rows)
        return "\n".join(parts)
    finally:
        await conn.close()


async def test_a_deleted_message_is_erased_everywhere(backend: Backend) -> None:
    searched, edited_to, unsearched, kept = canary(), canary(), canary(), canary()
    async with run_server(make_settings(backend)) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        token = server.token("ana", "Ana")
        path = f"/api/rooms/{room['id']}/search"
        one = await ana.chat("m1", f"my password is {searched}")
        two = await ana.chat("m2", f"and the other one is {unsearched}")
        await ana.chat("m3", f"this one stays: {kept}")
        assert [r["seq"] for r in await search(server, token, path, searched)] == [one]
        assert (await edit(ana, "e1", one, f"I meant {edited_to}"))["type"] == "ack"
        assert [r["seq"] for r in await search(server, token, path, edited_to)] == [one]
        assert (await delete(ana, "d1", one))["type"] == "ack"
        # A checklist operation just before: the delete may share the reducer's batch (on
        # PostgreSQL the room's events then go through the writer's reducer lane).
        await ana.send({"type": "checklist.add", "id": "k1", "title": "a step"})
        assert (await delete(ana, "d2", two))["type"] == "ack"

        erased = (searched, edited_to, unsearched)
        fresh = await RoomClient.connect(server.ws, room["id"], token)
        replay = await RoomClient.connect(
            server.ws, room["id"], token, since=0, epoch=fresh.welcome["epoch"]
        )
        frames = [await replay.recv() for _ in range(7)]
        answers = [fresh.welcome, frames, await messages(server, room["id"])]
        for word in (*erased, "password", "meant"):
            answers.append(await search(server, token, path, word))
            answers.append(await search(server, token, "/api/search", word))
        for word in erased:
            assert word not in str(answers), word
        assert kept in str(answers)  # the check can see text that is there
        if backend.name == "sqlite":
            stored = sqlite_bytes(backend.database_url)
        else:
            stored = (await postgres_text(backend.database_url)).encode()
        for word in erased:
            assert word.encode() not in stored, word
        assert kept.encode() in stored


async def test_the_sqlalchemy_path_decides_and_erases_the_same(backend: Backend) -> None:
    """Without a fast appender (a PostgreSQL URL with driver options, a database without a
    file) every batch takes ``append_batch`` on SQLAlchemy: the same rules and erasure."""
    gone, edited_to, kept = canary(), canary(), canary()
    async with run_server(make_settings(backend)) as server:
        assert server.state is not None
        db = server.state.db
        appender, db.appender = db.appender, None
        try:
            room = await create_room(server.url, server.service(), MEMBERS)
            ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
            ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
            token, path = server.token("ana", "Ana"), f"/api/rooms/{room['id']}/search"
            one = await ana.chat("m1", f"first {gone}")
            await ana.chat("m2", f"second {kept}")
            reply = {"type": "chat.send", "id": "r1", "body": "re", "reply_to": one}
            assert (await answer(ana, reply))["type"] == "ack"
            assert (await answer(ana, {**reply, "id": "r2", "reply_to": 9}))["code"] == "not_found"
            assert [r["seq"] for r in await search(server, token, path, gone)] == [one]
            assert (await edit(ben, "x", one, "not mine"))["code"] == "forbidden"
            assert (await edit(ana, "e1", one, f"now {edited_to}"))["type"] == "ack"
            assert [r["seq"] for r in await search(server, token, path, edited_to)] == [one]
            assert (await delete(ana, "d1", one))["type"] == "ack"
            for word in (gone, edited_to):
                assert await search(server, token, path, word) == []
            assert (await messages(server, room["id"]))[0]["deleted"] is True
            async with db.read() as conn:
                stored = " ".join(r[0] for r in await conn.execute(text("SELECT data FROM event")))
            if backend.name != "sqlite":
                stored += await postgres_text(backend.database_url)
            assert gone not in stored and edited_to not in stored and kept in stored
        finally:
            db.appender = appender
