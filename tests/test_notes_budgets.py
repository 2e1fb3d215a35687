"""What one member may cost the notes server: the document's real size, storage and write
bytes, whole-document sync replies, invalid updates (each a rebuild) and awareness."""

from __future__ import annotations

import asyncio
import time

from pycrdt import Doc, create_sync_message, create_update_message

from menteo_testkit.waits import wait_event
from tests.backends import Backend
from tests.client import create_room
from tests.notes_client import NotesClient
from tests.servers import make_settings, run_server
from tests.test_notes_awareness import connect, cursor, limit_hits, roundtrip, update
from tests.test_notes_safety import PANICS, client_11_edit, stored_rows

MEMBERS = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]


def close_reason(client: NotesClient) -> str | None:
    received = client.ws.protocol.close_rcvd
    return None if received is None else received.reason


async def fill_and_empty(filler: NotesClient, watch: NotesClient, rounds: int, size: int) -> None:
    """Insert ``size`` characters and delete them again, ``rounds`` times, each relayed."""
    for i in range(rounds):
        filler.text += chr(ord("a") + i % 26) * size
        await watch.wait_for(lambda: len(str(watch.text)) == size)
        del filler.text[0:size]
        await watch.wait_for(lambda: str(watch.text) == "")


async def test_deleted_text_does_not_fill_the_document(backend: Backend) -> None:
    settings = make_settings(backend, notes_max_update_bytes=70_000, notes_max_doc_bytes=100_000)
    async with run_server(settings) as server:
        room = (await create_room(server.url, server.service(), MEMBERS))["id"]
        filler = await connect(server, room, "ben")
        watch = await connect(server, room, "ben")  # also keeps the document open
        # 150 KB of updates into a 100 KB document that ends empty.
        await fill_and_empty(filler, watch, rounds=5, size=30_000)
        ana = await connect(server, room, "ana")
        ana.text += "still writable"
        await watch.wait_for(lambda: str(watch.text) == "still writable")  # relayed: stored
        await filler.wait_for(lambda: str(filler.text) == "still writable")
        await roundtrip(ana)  # the socket is open: not closed 4413
        assert limit_hits(server, "notes_close_4413") == 0


async def test_bytes_of_updates_trigger_compaction(backend: Backend) -> None:
    settings = make_settings(
        backend,
        notes_max_update_bytes=70_000,
        notes_compact_every=1_000_000,
        notes_compact_bytes=50_000,
        notes_retention=0.0,
    )
    async with run_server(settings) as server:
        room = (await create_room(server.url, server.service(), MEMBERS))["id"]
        filler = await connect(server, room, "ben")
        watch = await connect(server, room, "ben")
        await fill_and_empty(filler, watch, rounds=2, size=30_000)  # 60 KB of updates
        assert server.state is not None
        document = server.state.notes.open[room].result()
        if document.compacting is not None:
            await asyncio.wait_for(asyncio.shield(document.compacting), 10)
        assert document.bytes_since_compaction < 50_000
        stored = sum(
            len(u) for _, kind, u in await stored_rows(server, room) if kind == "notes.update"
        )
        assert stored < 50_000  # the covered updates went with the snapshot


async def test_update_bytes_per_user_are_budgeted(backend: Backend) -> None:
    # Defaults: 256 KiB per update, 1 MiB of burst, then 4 KiB/s, per user per document.
    async with run_server(make_settings(backend)) as server:
        room = (await create_room(server.url, server.service(), MEMBERS))["id"]
        first = await connect(server, room, "ana")
        second = await connect(server, room, "ana")
        watch = await connect(server, room, "ben")
        chunk = 250_000
        for i in range(3):
            first.text += "x" * chunk
            await watch.wait_for(lambda n=i: len(str(watch.text)) == (n + 1) * chunk)
        second.text += "y" * chunk  # the fourth of the user's updates, on another socket
        await watch.wait_for(lambda: len(str(watch.text)) == 4 * chunk)
        second.text += "z" * chunk  # the fifth passes the user's budget
        assert await second.close_code() == 1008
        assert close_reason(second) == "notes write budget exceeded"
        assert limit_hits(server, "notes_bytes") == 1
        watch.text += "ben writes"  # another user's budget is untouched
        await first.wait_for(lambda: str(first.text).endswith("ben writes"))
        assert "z" not in str(watch.text)
        # The budget outlives the document: it closes with its last socket and reopens.
        assert server.state is not None
        document = server.state.notes.open[room].result()
        await first.close()
        await watch.close()
        await wait_event(document.closed, "the document to close")
        back = await connect(server, room, "ana")
        back.text += "z" * chunk
        assert await back.close_code() == 1008
        assert limit_hits(server, "notes_bytes") == 2


async def test_whole_document_sync_requests_are_budgeted(backend: Backend) -> None:
    async with run_server(make_settings(backend)) as server:
        room = (await create_room(server.url, server.service(), MEMBERS))["id"]
        writer = await connect(server, room, "ana")
        writer.text += "x" * 100_000
        reader = await connect(server, room, "ben")  # its first sync request
        await reader.wait_for(lambda: len(str(reader.text)) == 100_000)
        for _ in range(6):  # six more whole-document requests: still answered
            reader.synced.clear()
            await reader.ws.send(create_sync_message(Doc()))
            await reader.wait_synced()
        replies = [m for m in reader.received if m[:2] == b"\x00\x01"]
        assert len(replies) == 7 and len(set(replies)) == 1  # the same encoding each time
        # The eighth of the user's requests, on a new socket: a reconnect does not refill.
        again = await connect(server, room, "ben")
        await again.ws.send(create_sync_message(Doc()))  # the ninth within the minute
        assert await again.close_code() == 1008
        assert close_reason(again) == "too many sync requests"
        assert limit_hits(server, "notes_sync") == 1
        await roundtrip(writer)  # another user's requests are still answered


async def test_a_refused_update_puts_its_user_in_a_cooldown(backend: Backend) -> None:
    async with run_server(make_settings(backend)) as server:
        room = (await create_room(server.url, server.service(), MEMBERS))["id"]
        ana = await connect(server, room, "ana")
        ben = await connect(server, room, "ben")
        await ana.ws.send(create_update_message(client_11_edit("hello")))
        await ben.wait_for(lambda: str(ben.text) == "hello")
        await ana.ws.send(create_update_message(PANICS))
        assert await ana.close_code() == 1007
        again = await connect(server, room, "ana")
        await again.ws.send(create_update_message(PANICS))  # refused without a rebuild
        assert await again.close_code() == 1013
        assert close_reason(again) == "an invalid update was refused: try again later"
        assert server.state is not None
        assert server.state.metrics.counters[("menteo_notes_apply_failures_total", "")] == 1
        assert limit_hits(server, "notes_refusal_cooldown") == 1
        ben.text += " world"  # other members are not held up
        watch = await connect(server, room, "ben")
        await watch.wait_for(lambda: str(watch.text) == "hello world")


async def test_one_user_cannot_crowd_others_out_of_awareness(backend: Backend) -> None:
    async with run_server(make_settings(backend)) as server:
        room = (await create_room(server.url, server.service(), MEMBERS))["id"]
        watch = await connect(server, room, "ana")
        # 8 sockets x 4 client ids: enough to fill the document's 32 states.
        crowd = [await connect(server, room, "ben") for _ in range(8)]
        for s, socket in enumerate(crowd):
            await socket.ws.send(update([(1000 + 4 * s + i, 1, cursor("b")) for i in range(4)]))
            await roundtrip(socket)
        assert limit_hits(server, "notes_awareness_states") == 24  # ben holds 8
        ana = await connect(server, room, "ana")
        await ana.ws.send(update([(500, 1, cursor("Ana"))]))
        await watch.wait_for(lambda: watch.others().get(500) == cursor("Ana"))
        assert len(watch.others()) == 9


async def test_awareness_renewals_are_rate_limited_per_socket(backend: Backend) -> None:
    async with run_server(make_settings(backend)) as server:
        room = (await create_room(server.url, server.service(), MEMBERS))["id"]
        watch = await connect(server, room, "ben")
        ana = await connect(server, room, "ana")
        started = time.monotonic()
        for clock in range(1, 61):
            await ana.ws.send(update([(600, clock, cursor(f"flood{clock}"))]))
        await ana.ws.send(update([(600, 61, None)]))  # a removal always goes

        def relayed() -> list[bytes]:
            return [m for m in watch.received if m[0] == 1 and b"flood" in m]

        await watch.wait_for(lambda: bool(relayed()) and 600 not in watch.others())
        elapsed = time.monotonic() - started
        # A burst of 20, then 10 a second.
        assert len(relayed()) <= 20 + 10 * elapsed + 1 < 60, (len(relayed()), elapsed)
        assert limit_hits(server, "notes_awareness_rate") >= 1
