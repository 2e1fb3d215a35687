"""The room page on a 390 px phone: it opens at the newest message with the message box on
screen, however long the history; the roadmap, the notes and the people are one tap away
(tabs), never below the whole history."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests.browser.roompage import PHONE, OpenRoom
from tests.browser.screenshots import screenshot
from tests.client import RoomClient
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import Locator, expect

pytestmark = pytest.mark.browser

HISTORY = 45  # messages: far taller than a phone's screen


async def on_screen(target: Locator) -> bool:
    """Whether the element is wholly inside the viewport."""
    inside: bool = await target.evaluate(
        """el => {
            const r = el.getBoundingClientRect();
            return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight + 0.5
                && r.left >= 0 && r.right <= window.innerWidth + 0.5;
        }"""
    )
    return inside


async def test_a_phone_opens_at_the_newest_message_with_the_composer_on_screen(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ben = await RoomClient.connect(web_server.ws, web_room["id"], web_server.token("ben", "Ben"))
    for n in range(1, HISTORY + 1):
        await ben.chat(f"m{n}", f"message number {n}\nwith a second line")
    ana = await open_room("ana", device=PHONE)
    await expect(ana.messages).to_have_count(HISTORY)
    page = ana.page

    # The page is the screen: nothing scrolls but the history, which is at its end.
    size = await page.evaluate(
        "({page: document.documentElement.scrollHeight, screen: window.innerHeight,"
        " wide: document.documentElement.scrollWidth, width: window.innerWidth})"
    )
    assert size["page"] <= size["screen"], size
    assert size["wide"] <= size["width"], size
    newest = ana.message(f"message number {HISTORY}")
    await expect(newest).to_be_in_viewport()
    assert await on_screen(newest)
    assert await on_screen(ana.composer)
    assert await on_screen(page.get_by_role("button", name="Send"))
    assert not await on_screen(ana.messages.first)
    await screenshot(page, "room-phone.png")

    # A new message shows at the bottom, still on screen.
    await ben.chat("late", "one more")
    await expect(ana.message("one more")).to_be_in_viewport()
    assert await on_screen(ana.composer)

    # The roadmap is one tap away, at the top of the screen (not after the history)...
    await expect(ana.checklist).to_be_hidden()
    await page.get_by_role("tab", name="Roadmap").tap()
    await expect(ana.checklist).to_be_visible()
    await expect(page.get_by_role("tab", name="Roadmap")).to_have_attribute("aria-selected", "true")
    await expect(ana.composer).to_be_hidden()
    assert await on_screen(page.get_by_label("New step"))
    await ana.add_step("Read chapter 3")
    await expect(ana.step("Read chapter 3")).to_be_visible()
    # ... so are the notes and the members...
    await page.get_by_role("tab", name="Notes").tap()
    await expect(ana.notes).to_be_visible()
    await expect(ana.checklist).to_be_hidden()
    await page.get_by_role("tab", name="People").tap()
    await expect(ana.member("ben")).to_be_visible()

    # ... and a message that comes in meanwhile marks the Chat tab.
    chat_tab = page.get_by_role("tab", name="Chat")
    await ben.chat("while away", "did you see the roadmap?")
    await expect(chat_tab).to_have_attribute("data-unread", "true")
    await chat_tab.tap()
    await expect(chat_tab).not_to_have_attribute("data-unread", "true")
    await expect(ana.message("did you see the roadmap?")).to_be_in_viewport()
    assert await on_screen(ana.composer)

    # A reload shows the view that was chosen (for this tab's session).
    await page.get_by_role("tab", name="Roadmap").tap()
    await page.reload()
    await ana.wait_state("live")
    await expect(ana.checklist).to_be_visible()
    await expect(page.get_by_role("tab", name="Roadmap")).to_have_attribute("aria-selected", "true")
    await expect(ana.composer).to_be_hidden()
    await ben.close()
