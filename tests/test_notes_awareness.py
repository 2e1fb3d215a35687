"""Awareness on the notes socket is bounded: client ids per socket, state size, states per
document, and expiry after the timeout, relayed as removal (across processes too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pycrdt import create_awareness_message, create_sync_message, write_var_uint

from tests.backends import Backend, make_backend
from tests.client import create_room
from tests.notes_client import NotesClient
from tests.servers import make_settings, run_server


def update(entries: list[tuple[int, int, Any]]) -> bytes:
    """An awareness message as y-protocols encodes it: (client id, clock, state) each."""
    parts = [write_var_uint(len(entries))]
    for client_id, clock, state in entries:
        text = state if isinstance(state, bytes) else orjson.dumps(state)
        parts += [write_var_uint(client_id), write_var_uint(clock), write_var_uint(len(text))]
        parts.append(text)
    return create_awareness_message(b"".join(parts))


def cursor(name: str, pad: int = 0) -> dict[str, Any]:
    return {"user": {"name": name, "color": "#f80", "pad": "x" * pad}}


async def connect(server: Any, room_id: str, user: str) -> NotesClient:
    client = await NotesClient.connect(server.ws, room_id, server.token(user))
    await client.wait_synced()
    return client


async def roundtrip(client: NotesClient) -> None:
    """Wait until the server has handled everything ``client`` sent so far (a socket's
    messages are handled in order; a sync step 1 gets a step 2 reply)."""
    client.synced.clear()
    await client.ws.send(create_sync_message(client.doc))
    await client.wait_synced()


def limit_hits(server: Any, limit: str) -> int:
    assert server.state is not None
    hits: int = server.state.metrics.counters[("menteo_limit_hits_total", limit)]
    return hits


async def test_a_flood_of_client_ids_and_states_is_refused(backend: Backend) -> None:
    settings = make_settings(backend, notes_awareness_max_states=5)
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = (await create_room(server.url, server.service(), members))["id"]
        ben = await connect(server, room, "ben")
        # One message speaking for many client ids: refused whole, nothing relayed.
        flood = await connect(server, room, "ana")
        await flood.ws.send(update([(1000 + i, 1, cursor("x")) for i in range(1000)]))
        assert await flood.close_code() == 1008
        assert flood.ws.protocol.close_rcvd is not None
        assert flood.ws.protocol.close_rcvd.reason == "too many awareness client ids"
        # The same, one id per message: four are taken, the fifth closes the socket.
        drip = await connect(server, room, "ana")
        for i in range(5):
            await drip.ws.send(update([(2000 + i, 1, cursor(f"d{i}"))]))
        assert await drip.close_code() == 1008
        # A state past 4 KiB: refused.
        big = await connect(server, room, "ana")
        await big.ws.send(update([(3000, 1, cursor("big", pad=5000))]))
        assert await big.close_code() == 1009
        assert big.ws.protocol.close_rcvd is not None
        assert big.ws.protocol.close_rcvd.reason == "awareness state too large"
        # Not JSON: every y-protocols client would throw on it.
        junk = await connect(server, room, "ana")
        await junk.ws.send(update([(3001, 1, b"{not json")]))
        assert await junk.close_code() == 1007
        # The document holds at most 5 states however many sockets publish.
        publishers = [await connect(server, room, "ana") for _ in range(7)]
        for i, publisher in enumerate(publishers):
            await publisher.ws.send(update([(4000 + i, 1, cursor(f"p{i}"))]))
            await roundtrip(publisher)
        await ben.wait_for(lambda: len(ben.others()) == 5)
        assert limit_hits(server, "notes_awareness_states") == 2  # the last two, dropped
        joiner = await connect(server, room, "ben")
        await joiner.wait_for(lambda: len(joiner.others()) == 5)
        sizes = [len(m) for m in joiner.received if m[0] == 1]
        assert sizes and max(sizes) < 5 * 4096
        assert set(joiner.others()) <= {4000 + i for i in range(7)}
        assert not set(ben.others()) & set(range(1000, 3999))


async def test_a_socket_cannot_speak_for_another_users_client_id(backend: Backend) -> None:
    async with run_server(make_settings(backend)) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = (await create_room(server.url, server.service(), members))["id"]
        ana = await connect(server, room, "ana")
        ben = await connect(server, room, "ben")
        watch = await connect(server, room, "ben")
        await ana.ws.send(update([(77, 1, cursor("Ana"))]))
        await watch.wait_for(lambda: watch.others().get(77) == cursor("Ana"))
        await ben.ws.send(update([(77, 5, cursor("forged"))]))  # dropped and counted
        await roundtrip(ben)
        await ben.ws.send(update([(78, 1, cursor("Ben"))]))  # its own: relayed
        await watch.wait_for(lambda: 78 in watch.others())
        assert watch.others()[77] == cursor("Ana")
        assert limit_hits(server, "notes_awareness_foreign") == 1
        # The same user reconnecting with the same Yjs client id takes its cursor over.
        again = await connect(server, room, "ana")
        await again.ws.send(update([(77, 2, cursor("Ana again"))]))
        await watch.wait_for(lambda: watch.others().get(77) == cursor("Ana again"))
        await ana.close()  # the old socket no longer owns 77: its leaving removes nothing
        await again.ws.send(update([(78, 2, cursor("x"))]))  # ben's id: dropped
        await roundtrip(again)
        assert limit_hits(server, "notes_awareness_foreign") == 2
        assert watch.others() == {77: cursor("Ana again"), 78: cursor("Ben")}


async def test_states_expire_after_the_timeout_and_go_as_removals(backend: Backend) -> None:
    settings = make_settings(backend, notes_awareness_timeout=0.5)
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = (await create_room(server.url, server.service(), members))["id"]
        ben = await connect(server, room, "ben")
        ana = await connect(server, room, "ana")
        await ana.ws.send(update([(90, 1, cursor("Ana"))]))
        await ben.wait_for(lambda: 90 in ben.others())
        await ben.wait_for(lambda: 90 not in ben.others())  # ana never renewed: removed
        assert server.state is not None
        counters = server.state.metrics.counters
        assert counters[("menteo_notes_awareness_expired_total", "")] == 1
        joiner = await connect(server, room, "ben")
        await joiner.ws.send(bytes([3]))  # query awareness: nothing is held any more
        await ana.ws.send(update([(90, 2, cursor("Ana back"))]))  # renewed: back again
        await joiner.wait_for(lambda: joiner.others().get(90) == cursor("Ana back"))
        assert [m for m in joiner.received if m[0] == 1 and b"Ana back" not in m] == []


async def test_awareness_crosses_processes_and_expires_in_each(tmp_path: Path) -> None:
    backend = await make_backend("postgres+redis", tmp_path)  # two processes need Redis
    settings = make_settings(backend, notes_awareness_timeout=0.5, notes_awareness_max_states=3)
    async with run_server(settings) as one, run_server(settings) as two:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = (await create_room(one.url, one.service(), members))["id"]
        ben = await connect(two, room, "ben")
        ana = await connect(one, room, "ana")
        await ana.ws.send(update([(91, 1, cursor("Ana"))]))
        await ben.wait_for(lambda: ben.others().get(91) == cursor("Ana"))
        others = [await connect(one, room, "ana") for _ in range(4)]
        for i, other in enumerate(others):
            await other.ws.send(update([(100 + i, 1, cursor(f"o{i}"))]))
        await ben.wait_for(lambda: len(ben.others()) == 3)
        await ben.wait_for(lambda: not ben.others())  # every state expires on process two
        late = await connect(two, room, "ben")
        await late.ws.send(bytes([3]))
        await ana.ws.send(update([(91, 2, cursor("Ana"))]))
        await late.wait_for(lambda: 91 in late.others())
        assert set(late.others()) == {91}
