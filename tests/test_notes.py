"""Shared notes over the y-websocket protocol: convergence, persistence, limits, access."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pycrdt import Doc, Text, create_update_message

from menteo_testkit.waits import wait_event, within
from tests.backends import Backend
from tests.ci import one_worker_at_a_time, skip_or_fail
from tests.client import close_code, create_room
from tests.notes_client import NotesClient, converged
from tests.servers import Running, make_settings, run_server


async def server_text(server: Running, room_id: str) -> str:
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get(f"/api/rooms/{room_id}/notes", headers=server.service())
    assert resp.status_code == 200
    text: str = resp.json()["text"]
    return text


async def test_concurrent_edits_at_the_same_place_converge_and_survive_restart(
    backend: Backend,
) -> None:
    settings = make_settings(backend)
    async with run_server(settings) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        ben = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
        await ana.wait_synced()
        await ben.wait_synced()
        ana.text += "Agenda: "
        await ben.wait_for(lambda: str(ben.text) == "Agenda: ", "Ana's agenda at Ben")
        # Both type at the very same position at once.
        ana.text.insert(8, "SQL")
        ben.text.insert(8, "dbt")
        await ana.wait_for(lambda: len(str(ana.text)) == 14, "Ben's insert at Ana")
        final = await converged([ana, ben])
        assert sorted([final[8:11], final[11:14]]) == ["SQL", "dbt"]
        # Each one's insert reached the other, and the server stores before relaying.
        assert await server_text(server, room["id"]) == final
        await ana.close()
        await ben.close()
    async with run_server(settings) as again:
        assert await server_text(again, room["id"]) == final
        fresh = await NotesClient.connect(again.ws, room["id"], again.token("ana"))
        await fresh.wait_for(lambda: str(fresh.text) == final, "the text after a restart")
        copy: Doc = Doc()  # what the restarted server sent survives its own encoding
        copy.apply_update(fresh.doc.get_update())
        assert str(copy.get("notes", type=Text)) == final
        async with httpx.AsyncClient(base_url=again.url) as http:
            resp = await http.get(f"/api/rooms/{room['id']}/notes", headers=again.service())
        md = resp.json()["markdown"]
        assert md.startswith("# ") and final.strip() in md


async def test_access_rules_match_the_room_socket(server: Running, room: dict[str, Any]) -> None:
    path = f"/rooms/{room['id']}/notes"
    assert await close_code(server.ws, path) == 4401
    assert await close_code(server.ws, f"{path}?token={server.token('eve')}") == 4403
    assert await close_code(server.ws, f"/rooms/missing/notes?token={server.token('eve')}") == 4404
    async with httpx.AsyncClient(base_url=server.url) as http:
        eve = {"authorization": "Bearer " + server.token("eve")}
        assert (await http.get(f"/api/rooms/{room['id']}/notes", headers=eve)).status_code == 403


async def test_non_member_receives_nothing_of_the_document(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
    await ana.wait_synced()
    await ben.wait_synced()
    ana.text += "private plans"
    # Relayed, so in the room's document: there is something for Eve not to receive.
    await ben.wait_for(lambda: str(ben.text) == "private plans", "Ana's text at Ben")
    async with websockets.connect(
        f"{server.ws}/rooms/{room['id']}/notes?token={server.token('eve')}"
    ) as ws:

        async def until_closed() -> None:
            while True:
                assert b"private" not in await ws.recv()

        with pytest.raises(websockets.ConnectionClosed) as info:
            await within(until_closed(), "Eve's socket to be closed")
        assert info.value.rcvd is not None and info.value.rcvd.code == 4403


async def test_malformed_update_closes_only_that_socket(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
    await ana.wait_synced()
    await ben.wait_synced()
    ana.text += "intact"
    await ben.wait_for(lambda: str(ben.text) == "intact", "Ana's text at Ben")
    await ben.ws.send(b"\x00\x02\x05\x01\x02\x03\x04\x05")  # an update that does not decode
    assert await ben.close_code() == 1007
    cy = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
    await cy.wait_for(lambda: str(cy.text) == "intact", "the text at a new socket of Ben's")
    ana.text += " still"  # Ana's socket was not closed with Ben's: it still edits
    await cy.wait_for(lambda: str(cy.text) == "intact still", "Ana's edit after Ben's 1007")
    assert await server_text(server, room["id"]) == "intact still"  # relayed: stored
    for junk in (b"\x07", b"", b"\x01\xff"):
        bad = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
        await bad.ws.send(junk)
        assert await bad.close_code() == 1007


async def test_oversized_update_and_full_document(backend: Backend) -> None:
    settings = make_settings(backend, notes_max_update_bytes=70_000, notes_max_doc_bytes=100_000)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await ana.wait_synced()
        big = Doc()
        big.get("notes", type=Text).insert(0, "x" * 80_000)
        await ana.ws.send(create_update_message(big.get_update()))
        assert await ana.close_code() == 1009
        ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        observer = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await ana.wait_synced()
        await observer.wait_synced()
        for _ in range(2):
            chunk = Doc()
            chunk.get("notes", type=Text).insert(0, "y" * 60_000)
            await ana.ws.send(create_update_message(chunk.get_update()))
        assert await ana.close_code() == 4413
        await observer.wait_for(
            lambda: len(str(observer.text)) == 60_000, "the first 60,000 chars relayed"
        )  # relayed: stored
        assert len(await server_text(server, room["id"])) == 60_000  # the first one only


async def test_awareness_is_relayed_and_cleared(server: Running, room: dict[str, Any]) -> None:
    from pycrdt import Awareness, create_awareness_message

    ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await NotesClient.connect(server.ws, room["id"], server.token("ben"))
    await ana.wait_synced()
    await ben.wait_synced()
    awareness = Awareness(ana.doc)
    awareness.set_local_state({"user": {"name": "Ana", "color": "#f80"}})
    await ana.ws.send(
        create_awareness_message(awareness.encode_awareness_update([ana.doc.client_id]))
    )
    await ben.wait_for(
        lambda: any(m[0] == 1 and b"Ana" in m for m in ben.received), "Ana's cursor at Ben"
    )
    await ana.close()
    await ben.wait_for(
        lambda: any(m[0] == 1 and b"null" in m for m in ben.received), "Ana's cursor cleared"
    )


JS = Path(__file__).parent / "js"


@pytest.fixture(scope="session")
def node_client() -> Path:
    """The stock JavaScript client (npm ``yjs`` + ``y-websocket``), installed from the lock."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip_or_fail("node/npm not found: the JavaScript Yjs client cannot run")
    with one_worker_at_a_time(JS):
        if (JS / "node_modules" / "y-websocket").is_dir():
            return JS / "sync.mjs"
        command = "ci" if (JS / "package-lock.json").exists() else "install"
        subprocess.run(
            [npm, command, "--no-audit", "--no-fund"],
            cwd=JS,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return JS / "sync.mjs"


async def test_stock_javascript_y_websocket_client_syncs(
    server: Running, room: dict[str, Any], node_client: Path
) -> None:
    ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    await ana.wait_synced()
    ana.text += "from python"
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(node_client),
        server.ws,
        room["id"],
        server.token("ben"),
        "from js; ",
        "from python",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await within(proc.communicate(), "the JavaScript client to sync and exit", 30)
    assert proc.returncode == 0, err.decode()
    js_text = json.loads(out)["text"]
    await ana.wait_for(lambda: str(ana.text) == "from js; from python", "the JS client's edit")
    assert js_text == str(ana.text)
    assert await server_text(server, room["id"]) == "from js; from python"


async def test_rooms_typing_in_step_do_not_compact_together(backend: Backend) -> None:
    """Each document compacts at its own drawn share (3/4 to all) of the threshold: rooms
    typing at one pace would otherwise all snapshot at the same update, at once."""
    from sqlalchemy import text

    rooms_n, every = 6, 40
    settings = make_settings(backend, notes_compact_every=every)
    async with run_server(settings) as server:
        pairs = []
        for _ in range(rooms_n):
            room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
            writer = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
            reader = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
            await writer.wait_synced()
            await reader.wait_synced()
            pairs.append((room["id"], writer, reader))
        assert server.state is not None
        for i in range(every + 2):  # in step: every room's update i before any room's i + 1
            for _, writer, reader in pairs:
                writer.text += f"{i},"
                expected = str(writer.text)
                await reader.wait_for(lambda r=reader, e=expected: str(r.text) == e, f"edit {i}")
        for room_id, _, _ in pairs:
            document = server.state.notes.open[room_id].result()
            if document.compacting is not None:
                await within(asyncio.shield(document.compacting), "a compaction", 10)
        async with server.state.db.read() as db:
            rows = await db.execute(
                text("SELECT room_id, min(seq) FROM note_snapshot GROUP BY room_id")
            )
            first = dict(rows.all())
        for _, writer, reader in pairs:
            await writer.close()
            await reader.close()
    assert len(first) == rooms_n, first  # each room compacted once on the way
    assert all(0.75 * every <= seq <= every + 1 for seq in first.values()), first
    assert len(set(first.values())) > 1, f"every room compacted at the same update: {first}"


async def test_compaction_keeps_the_text_and_drops_covered_updates(backend: Backend) -> None:
    from sqlalchemy import func, select

    from realtime.persistence.events import EVENT
    from realtime.persistence.rooms import notes_stream

    settings = make_settings(backend, notes_compact_every=10, notes_retention=0.0)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        observer = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await ana.wait_synced()
        await observer.wait_synced()
        for i in range(35):
            ana.text += f"{i},"
        expected = "".join(f"{i}," for i in range(35))
        await observer.wait_for(lambda: str(observer.text) == expected, "35 edits relayed")
        assert server.state is not None
        document = server.state.notes.open[room["id"]].result()
        await ana.close()
        await observer.close()
        await wait_event(document.closed, "the last socket's compaction")
        async with server.state.db.read() as db:
            left = (
                await db.execute(
                    select(func.count())
                    .select_from(EVENT)
                    .where(EVENT.c.stream == notes_stream(room["id"]))
                )
            ).scalar()
        assert left is not None and left < 10
        again = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await again.wait_for(lambda: str(again.text) == expected, "the compacted text")
