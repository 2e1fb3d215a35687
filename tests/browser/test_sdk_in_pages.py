"""The SDK (clients/js, served at /sdk/) as the pages use it, where only a browser shows it:
the notes panel tells a refusal of the notes socket and stops there (y-websocket alone would
retry it every 2.5 s), and the room page's outbox writes under a Web Lock shared by the
user's tabs.

Every wait is on the page with a timeout; the one bounded pause checks that nothing happens
(no second notes socket) over longer than y-websocket's longest backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.roompage import OpenRoom
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import WebSocketRoute

pytestmark = pytest.mark.browser

Y_WEBSOCKET_MAX_BACKOFF = 2.5  # seconds: y-websocket's default maxBackoffTime


@pytest.mark.usefixtures("notes_bundle")
@pytest.mark.parametrize(
    ("code", "text"),
    [
        (4403, "Notes disconnected: you are not a member of this room."),
        (4423, "The room is archived: the notes are read-only."),
    ],
)
async def test_a_refused_notes_socket_is_told_and_not_retried(
    open_room: OpenRoom, code: int, text: str
) -> None:
    opened: list[str] = []

    async def refuse(ws: WebSocketRoute) -> None:
        opened.append(ws.url)
        await ws.close(code=code, reason="refused")

    async def setup(page: Any) -> None:
        await page.route_web_socket("**/rooms/*/notes*", refuse)

    ana = await open_room("ana", setup=setup)
    await expect(ana.notes).to_have_attribute("data-status", "closed")
    await expect(ana.notes.locator(".notes-status")).to_have_text(text)
    await asyncio.sleep(Y_WEBSOCKET_MAX_BACKOFF + 1.5)  # nothing may happen: no retry
    assert len(opened) == 1, opened
    await expect(ana.notes).to_have_attribute("data-status", "closed")
    await expect(ana.connection).to_have_attribute("data-state", "live")  # the room goes on


async def test_the_outbox_writes_under_a_web_lock_shared_by_the_users_tabs(
    open_room: OpenRoom, web_room: dict[str, Any], web_server: Running
) -> None:
    ana = await open_room("ana")
    key = f"menteo.outbox.v1:{web_room['id']}:ana"
    # Another tab of Ana's (same browser profile: same storage, same locks) is in the middle
    # of its read-modify-write of this outbox: it holds the outbox's lock.
    other = await ana.page.context.new_page()
    await other.goto(f"{web_server.url}/feed.html")
    await other.evaluate(
        """name => new Promise(held => {
            navigator.locks.request(name, () => new Promise(release => {
                window.releaseOutbox = release;
                held();
            }));
        })""",
        f"menteo:{key}",
    )
    await ana.say("written while the other tab writes")
    await expect(ana.pending).to_have_count(1)
    # Not stored (and so not sent) while the lock is held elsewhere.
    held = await ana.page.evaluate("navigator.locks.query()")
    assert any(lock["name"] == f"menteo:{key}" for lock in held["pending"]), held
    assert await ana.page.evaluate("key => localStorage.getItem(key)", key) is None
    await expect(ana.message("written while the other tab writes")).to_have_count(0)

    await other.evaluate("window.releaseOutbox()")
    await expect(ana.message("written while the other tab writes")).to_have_count(1)
    await expect(ana.pending).to_have_count(0)
    assert await ana.page.evaluate("key => localStorage.getItem(key)", key) is None
