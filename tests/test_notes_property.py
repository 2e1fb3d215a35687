"""Property: random concurrent edits from two members, with drops and reconnects, end with
every client and the stored notes holding the merge of every edit made.

The expected text comes from the test's side alone: each local edit's Yjs update also goes
into a reference document that no server touches. A CRDT's merge does not depend on the
order updates arrive in, so that document's text is what docs/protocol.md's notes socket
promises everyone ("no update is lost"). And since the server "stores every update durably
before relaying it", once each client holds the others' edits, ``GET .../notes`` holds them.
"""

from __future__ import annotations

import asyncio
import itertools
import string
from collections.abc import Awaitable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text, create_update_message

from tests.client import create_room
from tests.notes_client import NotesClient
from tests.servers import Running

pytestmark = pytest.mark.slow

# ASCII only: pycrdt's own Text (the client here, not the server) panics on some deletes
# across multi-byte characters; the server only relays and stores opaque updates.
ASCII = string.ascii_letters + string.digits + " .,"

# (who, position fraction, text, delete count, drop afterwards)
edits = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),
        st.floats(0, 1),
        st.text(alphabet=ASCII, max_size=5),
        st.integers(0, 3),
        st.booleans(),
    ),
    min_size=1,
    max_size=20,
)
RUNS = itertools.count()  # fresh user ids per example: budgets are per user


async def within(seconds: float, what: str, wait: Awaitable[object]) -> None:
    """Await ``wait`` for at most ``seconds``; past that, fail naming ``what``."""
    try:
        async with asyncio.timeout(seconds):
            await wait
    except TimeoutError:
        raise AssertionError(f"not within {seconds} s: {what}") from None


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # count: the profile
@given(script=edits)
async def test_random_edits_with_drops_end_with_the_merge_of_every_edit(
    server: Running, script: list[tuple[int, float, str, int, bool]]
) -> None:
    n = next(RUNS)
    names = [f"ana{n}", f"ben{n}"]
    room = await create_room(
        server.url, server.service(), [(names[0], "Ana", "mentor"), (names[1], "Ben", "mentee")]
    )
    reference: Doc[Text] = Doc()
    expected_text = reference.get("notes", type=Text)

    async def connect(who: int) -> NotesClient:
        client = await NotesClient.connect(server.ws, room["id"], server.token(names[who]))
        await client.wait_synced(10)
        return client

    clients = [await connect(0), await connect(1)]
    try:
        for who, where, insert, delete, drop in script:
            doc, text = clients[who].doc, clients[who].text
            before = doc.get_state()
            at = int(where * len(str(text)))
            if delete and len(str(text)) > at:
                del text[at : min(len(str(text)), at + delete)]
            if insert:
                text.insert(at, insert)
            reference.apply_update(doc.get_update(before))  # this edit, and only it
            if drop:  # gone without a close frame; whatever it had not sent is re-synced
                clients[who].ws.transport.abort()
                await clients[who].close()
                old = clients[who]
                clients[who] = await connect(who)
                # A reconnecting client syncs both ways: it sends what the server lacks.
                clients[who].applying = True
                clients[who].doc.apply_update(old.doc.get_update())
                clients[who].applying = False
                await clients[who].ws.send(create_update_message(old.doc.get_update()))
        expected = str(expected_text)
        for who, client in enumerate(clients):
            await within(
                15,
                f"{names[who]} holding every edit ({expected!r}, has {str(client.text)!r})",
                client.wait_for(lambda c=client: str(c.text) == expected, timeout=15),
            )
        async with httpx.AsyncClient(base_url=server.url) as http:
            resp = await http.get(f"/api/rooms/{room['id']}/notes", headers=server.service())
        assert resp.json()["text"] == expected  # stored before relayed: no wait needed
    finally:
        for client in clients:
            await client.close()
