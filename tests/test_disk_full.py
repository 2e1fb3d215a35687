"""The single-process SQLite shape on a disk that fills up and frees again (the soak's
disk-full chaos, in small): while the disk is full every write is refused with
`unavailable` and nothing is acked; once space is free the same process stores again,
without a restart; a notes edit that could not be stored is stored when its sender syncs
again (the server forgets what it could not store). Needs root for a small tmpfs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from pycrdt import Doc, Text, create_sync_message, create_update_message, handle_sync_message

from menteo_testkit.waits import wait_until, within
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server
from tests.soak.sqlite_mode import SmallDisk

MEMBERS = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = SmallDisk(tmp_path / "disk", 16)
    try:
        small.mount()
    except Exception as exc:  # a container without mount rights
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield small
    finally:
        small.free()
        small.unmount()


@pytest.fixture
async def server(disk: SmallDisk) -> AsyncIterator[Running]:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{disk.path / 'menteo.db'}")
    async with run_server(make_settings(backend)) as running:
        yield running


def full(disk: SmallDisk) -> None:
    """Every commit from now on must grow the WAL (see ``SmallDisk.truncate_wal``), and no
    byte is free."""
    disk.truncate_wal(disk.path / "menteo.db")
    disk.fill()


async def test_a_full_disk_refuses_writes_with_unavailable_and_recovers_without_restart(
    server: Running, disk: SmallDisk
) -> None:
    room = await create_room(server.url, server.service(), MEMBERS)
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    assert await ana.chat("m1", "before") == 1
    await asyncio.to_thread(full, disk)
    for n in range(3):
        await ana.send({"type": "chat.send", "id": f"full{n}", "body": "on a full disk"})
        reply = await ana.recv_until(
            lambda f, n=n: f["type"] in ("ack", "error") and f.get("id") == f"full{n}"
        )
        assert reply["type"] == "error" and reply["code"] == "unavailable", reply
    disk.free()
    # The same ids again, as a client resends: stored now, each once, in order.
    for n in range(3):
        assert await ana.chat(f"full{n}", "on a full disk") == 2 + n
    assert await ana.chat("m2", "after") == 5
    seqs = [(await ben.recv_until(lambda f: f["type"] == "chat.message"))["seq"] for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    async with httpx.AsyncClient(base_url=server.url) as http:
        got = await http.get(f"/api/rooms/{room['id']}/messages", headers=server.service())
    assert [m["seq"] for m in got.json()["messages"]] == [1, 2, 3, 4, 5]


async def _sync(ws: websockets.ClientConnection, doc: Doc, until_synced: bool = True) -> None:
    """The y-websocket exchange a provider does on connect: our state vector, then answer
    the server's, until the server's step 2 came."""
    await ws.send(create_sync_message(doc))
    while until_synced:
        message = await ws.recv()
        assert isinstance(message, bytes)
        if message[0] != 0:
            continue
        reply = handle_sync_message(message[1:], doc)
        if reply is not None:
            await ws.send(reply)
        if message[1] == 1:
            return


async def test_a_notes_edit_refused_by_a_full_disk_is_stored_on_the_next_sync(
    server: Running, disk: SmallDisk
) -> None:
    room = await create_room(server.url, server.service(), MEMBERS)
    url = f"{server.ws}/rooms/{room['id']}/notes?token={server.token('ana')}"
    # Ben's socket keeps the room's document open in the server the whole time (with no
    # socket left it would be dropped, and loaded again from the database).
    ben = await websockets.connect(
        url.replace("token=" + server.token("ana"), "token=" + server.token("ben"))
    )
    await within(_sync(ben, Doc()), "ben's sync")
    doc = Doc()
    text = doc.get("notes", type=Text)
    async with websockets.connect(url) as ws:
        await within(_sync(ws, doc), "the first sync")
        await asyncio.to_thread(full, disk)
        with doc.transaction():
            text.insert(0, "typed on a full disk")
        update = doc.get_update()
        await ws.send(create_update_message(update))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await within(ws.recv(), "the close after the failed store")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    disk.free()
    # The same document connects again (as a browser's provider does) and syncs.
    async with websockets.connect(url) as ws:
        await within(_sync(ws, doc), "the sync after the disk was freed")

        async def stored() -> bool:
            async with httpx.AsyncClient(base_url=server.url) as http:
                got = await http.get(f"/api/rooms/{room['id']}/notes", headers=server.service())
            return bool(got.json()["text"] == "typed on a full disk")

        await wait_until(stored, "the edit stored after the next sync")
    await ben.close()
