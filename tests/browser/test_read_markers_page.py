"""Read markers from the room page (web/js/readmarkers.js): a message on screen in a shown,
focused tab is read (one coalesced ``read`` frame for a burst, not one per message); nothing is
sent while the tab is hidden or another window has the focus; and "Seen by …" sits under the
newest message the other member has read, moved live by ``read.marker``.

Two browser contexts (Ana and Ben); a real server; every wait is on the page."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.backends import make_backend
from tests.browser.roompage import OpenRoom, RoomPage
from tests.browser.test_room_page import set_hidden
from tests.servers import Running, make_settings, run_server

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Page, WebSocket

pytestmark = pytest.mark.browser


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def web_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    """The page's server on each backend: with Redis a stored marker reaches the room's
    sockets through the broker (a hub signal)."""
    backend = await make_backend(request.param, tmp_path)
    async with run_server(make_settings(backend)) as running:
        yield running


class SentReads:
    """Every ``read`` frame a page sent on its room sockets, in order."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    async def attach(self, page: Page) -> None:
        page.on("websocket", self._socket)

    def _socket(self, ws: WebSocket) -> None:
        if "/rooms/" in ws.url and not ws.url.split("?")[0].endswith("/notes"):
            ws.on("framesent", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        with contextlib.suppress(ValueError, TypeError):
            frame = json.loads(payload)
            if isinstance(frame, dict) and frame.get("type") == "read":
                self.seqs.append(frame["seq"])


def seen(page: RoomPage) -> Any:
    return page.page.locator("#messages .seen")


async def seq_of(page: RoomPage, body: str) -> int:
    value = await page.message(body).get_attribute("data-seq")
    assert value is not None
    return int(value)


async def set_focused(page: RoomPage, focused: bool) -> None:
    """Give the focus to another window, or back (headless pages always have it)."""
    await page.page.evaluate(
        """focused => {
            document.hasFocus = () => focused;
            window.dispatchEvent(new Event(focused ? "focus" : "blur"));
        }""",
        focused,
    )


async def test_ben_reads_and_ana_sees_seen_live(open_room: OpenRoom) -> None:
    reads = SentReads()
    ana = await open_room("ana")
    ben = await open_room("ben", setup=reads.attach)
    await ana.say("hello Ben")
    await expect(ben.message("hello Ben")).to_have_count(1)
    await expect(ana.message("hello Ben").locator(".seen")).to_have_text("Seen by Ben")
    first = await seq_of(ana, "hello Ben")
    assert reads.seqs == [first]
    await expect(seen(ana)).to_have_count(1)

    # Ben's own message is no news to him: Seen stays under Ana's, on Ben's page nothing of his.
    await ben.say("hi Ana")
    await expect(ana.message("hi Ana")).to_have_count(1)
    await expect(ana.message("hello Ben").locator(".seen")).to_have_text("Seen by Ben")
    # Ana reads Ben's message: Ben sees it seen.
    await expect(ben.message("hi Ana").locator(".seen")).to_have_text("Seen by Ana")

    # A page opened later shows the stored markers from its welcome.
    await ana.page.reload()
    await ana.wait_state("live")
    await expect(ana.message("hello Ben").locator(".seen")).to_have_text("Seen by Ben")


async def test_nothing_is_read_while_the_tab_is_hidden_or_unfocused(open_room: OpenRoom) -> None:
    reads = SentReads()
    ana = await open_room("ana")
    ben = await open_room("ben", setup=reads.attach)
    await ana.say("one")
    await expect(ana.message("one").locator(".seen")).to_have_text("Seen by Ben")

    # Hidden: the message arrives and is on screen, but is not read.
    await set_hidden(ben, True)
    await ana.say("while hidden")
    await expect(ben.message("while hidden")).to_have_count(1)
    hidden_seq = await seq_of(ben, "while hidden")
    scroller = ben.page.locator("#messages-scroll")
    await expect(scroller).to_have_attribute("data-read-held", str(hidden_seq))
    assert max(reads.seqs) < hidden_seq
    await expect(ana.message("one").locator(".seen")).to_have_count(1)
    # Shown again: read now.
    await set_hidden(ben, False)
    await expect(ana.message("while hidden").locator(".seen")).to_have_text("Seen by Ben")
    await expect(ana.message("one").locator(".seen")).to_have_count(0)

    # Another window has the focus: the same.
    await set_focused(ben, False)
    await ana.say("while elsewhere")
    await expect(ben.message("while elsewhere")).to_have_count(1)
    away_seq = await seq_of(ben, "while elsewhere")
    await expect(scroller).to_have_attribute("data-read-held", str(away_seq))
    assert max(reads.seqs) < away_seq
    await set_focused(ben, True)
    await expect(ana.message("while elsewhere").locator(".seen")).to_have_text("Seen by Ben")
    assert reads.seqs[-1] == away_seq


async def test_a_burst_of_messages_is_one_coalesced_read(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    from tests.client import RoomClient

    reads = SentReads()
    ben = await open_room("ben", setup=reads.attach)
    ana = await RoomClient.connect(web_server.ws, web_room["id"], web_server.token("ana", "Ana"))
    burst = 15
    last = 0
    for i in range(burst):
        last = await ana.chat(f"b{i}", f"burst {i}")
    await expect(ben.messages).to_have_count(burst)
    await expect(ben.page.locator("#messages-scroll")).to_have_attribute(
        "data-read-sent", str(last)
    )
    marker = await ana.recv_until(lambda f: f.get("type") == "read.marker" and f.get("seq") == last)
    assert marker["user_id"] == "ben"
    assert reads.seqs[-1] == last
    assert reads.seqs == sorted(set(reads.seqs))  # only ever forward, never twice
    assert len(reads.seqs) <= 3, reads.seqs  # not one per message
