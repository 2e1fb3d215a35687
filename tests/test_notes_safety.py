"""Notes updates that break a room's document: refused before storing, quarantined on load.

The update below applies to an empty document but makes Yrs panic (pyo3's
``PanicException``, a ``BaseException``) once the document holds an edit of Yjs client 11.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text, create_update_message
from sqlalchemy import select

from menteo_testkit.waits import wait_event
from realtime.notes import store
from realtime.persistence.database import Database
from realtime.persistence.events import EVENT, AppendResult, NewEvent, append_batch
from realtime.persistence.rooms import notes_stream
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.notes_client import NotesClient
from tests.servers import Running, make_settings, run_server

PANICS = bytes.fromhex("01000b0700080378797a010b010204")


def client_11_edit(text: str) -> bytes:
    doc: Doc[Any] = Doc(client_id=11)
    doc.get("notes", type=Text).insert(0, text)
    return doc.get_update()


async def get_notes(server: Running, room_id: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.get(f"/api/rooms/{room_id}/notes", headers=server.service())


async def stored_rows(server: Running, room_id: str) -> list[tuple[int, str, bytes]]:
    """(seq, type, update) of every notes row stored for the room."""
    assert server.state is not None
    async with server.state.db.read() as conn:
        rows = await conn.execute(
            select(EVENT.c.seq, EVENT.c.type, EVENT.c.data)
            .where(EVENT.c.stream == notes_stream(room_id))
            .order_by(EVENT.c.seq)
        )
        return [(r.seq, r.type, base64.b64decode(json.loads(r.data)["u"])) for r in rows]


def test_the_update_really_panics_yrs() -> None:
    """The premise: without the guard this is a BaseException, not an Exception."""
    Doc().apply_update(PANICS)  # alone it applies
    doc: Doc[Any] = Doc()
    doc.apply_update(client_11_edit("hello"))
    with pytest.raises(BaseException) as info:
        doc.apply_update(PANICS)
    assert not isinstance(info.value, Exception)


async def test_panicking_update_is_refused_and_the_server_stays_writable(
    backend: Backend,
) -> None:
    settings = make_settings(backend)
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        other = await create_room(server.url, server.service(), members)
        ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        ben = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
        await ana.wait_synced()
        await ben.wait_synced()
        await ana.ws.send(create_update_message(client_11_edit("hello")))
        await ben.wait_for(lambda: str(ben.text) == "hello")  # relayed: stored
        await ana.ws.send(create_update_message(PANICS))
        assert await ana.close_code() == 1007
        close = ana.ws.protocol.close_rcvd
        assert close is not None and close.reason == "invalid update"
        # The writer is alive: chat in another room is acked, and notes still take edits.
        chat = await RoomClient.connect(server.ws, other["id"], server.token("ben"))
        assert await asyncio.wait_for(chat.chat("c1", "still here"), 10) >= 1
        watch = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await watch.wait_for(lambda: str(watch.text) == "hello")
        ben.text += " world"
        await watch.wait_for(lambda: str(watch.text) == "hello world")  # relayed: stored
        assert (await get_notes(server, room["id"])).json()["text"] == "hello world"
        rows = await stored_rows(server, room["id"])
        assert {kind for _, kind, _ in rows} == {"notes.update"}
        assert PANICS not in [update for _, _, update in rows]  # refused: not stored
        assert server.state is not None
        assert server.state.metrics.counters[("menteo_notes_apply_failures_total", "")] == 1
        await ben.close()
    async with run_server(settings) as again:
        resp = await get_notes(again, room["id"])
        assert resp.status_code == 200 and resp.json()["text"] == "hello world"
        fresh = await NotesClient.connect(again.ws, room["id"], again.token("ben"))
        await fresh.wait_for(lambda: str(fresh.text) == "hello world")


class Reported(logging.Handler):
    """The server's log lines (its loggers do not propagate to pytest's capture)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_stored_history_that_does_not_load_is_quarantined(backend: Backend) -> None:
    settings = make_settings(backend)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        watch = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await ana.wait_synced()
        await watch.wait_synced()
        ana.text += "kept"
        await watch.wait_for(lambda: str(watch.text) == "kept")  # relayed: stored
    # As main stored it before this fix: an edit of client 11, then the update that panics,
    # then a good edit after it. Written by the server's own append path, server stopped.
    db = Database(settings.database_url)
    await db.prepare(auto_migrate=True)
    try:
        updates = [client_11_edit(" eleven "), PANICS, b"not an update at all"]
        after: Doc[Any] = Doc()
        after.get("notes", type=Text).insert(0, " after ")
        updates.append(after.get_update())
        items = [
            NewEvent(notes_stream(room["id"]), "notes.update", "ana", "Ana", None, data)
            for data in (store.event_data(u, "old") for u in updates)
        ]
        async with db.write() as conn:
            results = await append_batch(conn, items, lock_rows=not db.is_sqlite)
        seqs = [r.event.seq for r in results if isinstance(r, AppendResult)]
        bad_seqs = {seqs[1], seqs[2]}
    finally:
        await db.close()
    reported = Reported()
    async with run_server(settings) as again:
        logging.getLogger("menteo.notes").addHandler(reported)
        resp = await get_notes(again, room["id"])
        assert resp.status_code == 200
        text = resp.json()["text"]
        assert sorted(text.split()) == ["after", "eleven", "kept"]  # every good row
        rows = await stored_rows(again, room["id"])
        assert {seq for seq, kind, _ in rows if kind == "notes.quarantined"} == bad_seqs
        assert again.state is not None
        assert again.state.metrics.counters[("menteo_notes_quarantined_total", "")] == 2
        quarantined = [m for m in reported.messages if "quarantined notes update" in m]
        assert len(quarantined) == 2, reported.messages
        # The notes socket opens the same document, and reports nothing again.
        fresh = await NotesClient.connect(again.ws, room["id"], again.token("ana"))
        watch = await NotesClient.connect(again.ws, room["id"], again.token("ana"))
        await fresh.wait_for(lambda: str(fresh.text) == text)
        await watch.wait_for(lambda: str(watch.text) == text)
        fresh.text += "!"
        await watch.wait_for(lambda: str(watch.text) == text + "!")  # relayed: stored
        assert (await get_notes(again, room["id"])).json()["text"] == text + "!"
        assert again.state.metrics.counters[("menteo_notes_quarantined_total", "")] == 2
        async with httpx.AsyncClient(base_url=again.url) as http:
            exposed = (await http.get("/metrics")).text
        assert "menteo_notes_quarantined_total 2" in exposed
        logging.getLogger("menteo.notes").removeHandler(reported)


async def test_an_update_waiting_for_its_dependency_survives_compaction(backend: Backend) -> None:
    """Yrs holds an update whose dependencies have not arrived as pending, and
    ``Doc.get_update`` leaves it out: a snapshot must not drop it."""
    author: Doc[Any] = Doc()
    text = author.get("notes", type=Text)
    updates: list[bytes] = []
    author.observe(lambda event: updates.append(event.update))
    text += "abc"
    text += "def"
    del text[0:2]  # a deletion of items the server has not seen either
    first, second, third = updates
    marker: Doc[Any] = Doc()
    marker.get("notes", type=Text).insert(0, "X")
    settings = make_settings(backend)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        watch = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await ana.wait_synced()
        await watch.wait_synced()
        await ana.ws.send(create_update_message(second))  # depends on ``first``: pending
        await ana.ws.send(create_update_message(third))  # so does this deletion
        await ana.ws.send(create_update_message(marker.get_update()))
        await watch.wait_for(lambda: str(watch.text) == "X")  # both stored
        assert server.state is not None
        document = server.state.notes.open[room["id"]].result()
        await ana.close()
        await watch.close()
        await wait_event(document.closed, "the last socket's compaction")
    async with run_server(settings) as again:
        ana = await NotesClient.connect(again.ws, room["id"], again.token("ana"))
        watch = await NotesClient.connect(again.ws, room["id"], again.token("ana"))
        await watch.wait_for(lambda: str(watch.text) == "X")
        await ana.ws.send(create_update_message(first))
        await watch.wait_for(lambda: "ab" in str(watch.text))  # relayed: stored
        reference: Doc[Any] = Doc()
        for update in (second, third, marker.get_update(), first):
            reference.apply_update(update)
        expected = str(reference.get("notes", type=Text))
        assert sorted(expected.replace("X", " X ").split()) == ["X", "cdef"]
        assert (await get_notes(again, room["id"])).json()["text"] == expected
        fresh = await NotesClient.connect(again.ws, room["id"], again.token("ana"))
        await fresh.wait_for(lambda: str(fresh.text) == expected)


async def test_a_stored_update_that_panics_in_the_hub_listener_is_contained(
    server: Running, room: dict[str, Any]
) -> None:
    """As when another process (or an older version) stored it: the update reaches the
    room's open document through the hub, after its commit, from inside the writer."""
    ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
    await ana.wait_synced()
    await ben.wait_synced()
    await ana.ws.send(create_update_message(client_11_edit("hello")))
    await ben.wait_for(lambda: str(ben.text) == "hello")
    assert server.state is not None
    state = server.state
    item = NewEvent(
        notes_stream(room["id"]), "notes.update", "ana", "Ana", None, store.event_data(PANICS, "x")
    )
    await asyncio.wait_for(state.writer.append(item), 10)  # committed, then delivered
    assert state.metrics.counters[("menteo_notes_apply_failures_total", "")] == 1
    chat = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    assert await asyncio.wait_for(chat.chat("c1", "writer alive"), 10) >= 1
    watch = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    await watch.wait_for(lambda: str(watch.text) == "hello")  # the rebuilt document
    ben.text += " again"  # still takes edits
    await watch.wait_for(lambda: str(watch.text) == "hello again")  # relayed: stored
    assert (await get_notes(server, room["id"])).json()["text"] == "hello again"
