"""The room page and the room list for everyone: axe-core finds no serious or critical
violation (WCAG 2.x A and AA, colour contrast included) on a desktop and on a phone, in each
of the phone's views; and chat, the roadmap checklist and the room views work from the
keyboard alone."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests.browser.axe import report, violations
from tests.browser.roompage import DESKTOP, PHONE, NewPage, OpenRoom, RoomPage
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

pytestmark = pytest.mark.browser


async def assert_accessible(page: RoomPage | Any, where: str) -> None:
    found = await violations(page.page if isinstance(page, RoomPage) else page)
    assert not found, f"{where}:\n{report(found)}"


async def busy_room(open_room: OpenRoom) -> tuple[RoomPage, RoomPage]:
    """Ana and Ben with messages, a step and a pending state shown: a page with everything."""
    ana = await open_room("ana", device=DESKTOP)
    ben = await open_room("ben")
    await ben.say("Hi Ana, I pushed the first exercise")
    await ana.say("Great, I'll have a look")
    await ana.add_step("Read chapter 3")
    await expect(ben.step("Read chapter 3")).to_be_visible()
    await expect(ana.message("Hi Ana, I pushed the first exercise")).to_have_count(1)
    return ana, ben


async def test_the_room_page_passes_axe_on_a_desktop(open_room: OpenRoom) -> None:
    ana, _ = await busy_room(open_room)
    await expect(ana.page.locator("#room-list li")).to_have_count(1)
    await assert_accessible(ana, "room page, desktop")
    # With an error and a counter showing, and while reconnecting (greyed presence).
    await ana.composer.fill("   ")
    await ana.composer.press("Enter")
    await ana.composer.fill("x" * 3900)
    await expect(ana.page.locator("#composer-count")).not_to_have_text("")
    await assert_accessible(ana, "room page with a counter and an error")
    await ana.page.context.set_offline(True)
    await ana.wait_state("offline")
    await assert_accessible(ana, "room page, offline")


async def test_the_room_page_passes_axe_on_a_phone_in_every_view(open_room: OpenRoom) -> None:
    await busy_room(open_room)
    ben = await open_room("ben", device=PHONE)
    await expect(ben.step("Read chapter 3")).to_be_attached()
    for tab in ("Chat", "Roadmap", "Notes", "People"):
        await ben.page.get_by_role("tab", name=tab).tap()
        await expect(ben.page.get_by_role("tab", name=tab)).to_have_attribute(
            "aria-selected", "true"
        )
        await assert_accessible(ben, f"room page, phone, {tab}")


async def test_the_room_list_page_passes_axe(
    new_page: NewPage, open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ben = await open_room("ben")
    await ben.say("something unread for Ana")
    for device in (DESKTOP, PHONE):
        page = await new_page(device)
        await page.goto(f"{web_server.url}/rooms.html?token={web_server.token('ana', 'Ana')}")
        await expect(page.locator("#room-list .room-unread")).to_have_text("1")
        await assert_accessible(page, f"rooms.html, {device['viewport']['width']} px")
    refused = await new_page()
    await refused.goto(f"{web_server.url}/rooms.html?token=not.a.token")
    await expect(refused.get_by_role("alert")).to_be_visible()
    await assert_accessible(refused, "rooms.html, refused")


async def press_tab_until(
    page: RoomPage, condition: str, limit: int = 60, key: str = "Tab"
) -> None:
    """Press Tab (or `key`) until `condition` (JS, of document.activeElement as `el`) holds."""
    for _ in range(limit):
        await page.page.keyboard.press(key)
        if await page.page.evaluate(f"(el => Boolean({condition}))(document.activeElement)"):
            return
    raise AssertionError(f"Tab never reached {condition}")


async def test_chat_and_the_checklist_work_from_the_keyboard_alone(open_room: OpenRoom) -> None:
    ana = await open_room("ana", device=DESKTOP)
    ben = await open_room("ben")
    keyboard = ana.page.keyboard

    # The page opens with the message box focused: type and Enter.
    await expect(ana.composer).to_be_focused()
    await keyboard.type("Typed without a mouse")
    await keyboard.press("Enter")
    await expect(ben.message("Typed without a mouse")).to_have_count(1)
    await keyboard.type("two lines")
    await keyboard.press("Shift+Enter")
    await keyboard.type("here")
    await keyboard.press("Enter")
    await expect(ben.message("two lines\nhere")).to_have_count(1)

    # Back to the top of the page, where the skip link leads to the message box.
    await press_tab_until(ana, "el.classList.contains('skip-link')", key="Shift+Tab")
    await keyboard.press("Enter")
    await expect(ana.composer).to_be_focused()

    # The checklist: to the new-step field, add a step, tick it, all by keys.
    await press_tab_until(ana, "el.id === 'checklist-new'")
    await keyboard.type("Set up the repository")
    await keyboard.press("Enter")
    await expect(ben.step("Set up the repository")).to_be_visible()
    await press_tab_until(ana, "el.classList.contains('step-check')", key="Shift+Tab")
    await keyboard.press("Space")
    await expect(ana.step("Set up the repository").locator(".step-check")).to_be_checked()
    await expect(ben.step("Set up the repository").locator(".step-check")).to_be_checked()

    # The room list is reachable too: its entry for this room says it is the current page.
    await press_tab_until(ana, "el.classList.contains('room-link')", key="Shift+Tab")
    await expect(ana.page.locator(".room-link:focus")).to_have_attribute("aria-current", "page")


async def test_the_phone_views_change_from_the_keyboard(open_room: OpenRoom) -> None:
    ana = await open_room("ana", device=PHONE)
    chat_tab = ana.page.get_by_role("tab", name="Chat")
    await chat_tab.focus()
    await ana.page.keyboard.press("ArrowRight")
    roadmap = ana.page.get_by_role("tab", name="Roadmap")
    await expect(roadmap).to_be_focused()
    await expect(roadmap).to_have_attribute("aria-selected", "true")
    await expect(ana.checklist).to_be_visible()
    await ana.page.keyboard.press("End")
    await expect(ana.page.get_by_role("tab", name="People")).to_be_focused()
    await expect(ana.member("ana")).to_be_visible()
    await ana.page.keyboard.press("Home")
    await expect(chat_tab).to_have_attribute("aria-selected", "true")
    await expect(ana.composer).to_be_visible()
    # Only the chosen tab is in the Tab order (the tabs pattern).
    assert await ana.page.locator('[role="tab"][tabindex="0"]').count() == 1
