"""My rooms (web/rooms.html, and the room page's sidebar): the list the inbox socket keeps,
each room with its last message and unread count, live, and the unread total in the tab's
title. Two people in two browser contexts: what Ben sends shows in Ana's list as it happens.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

from tests.browser.roompage import DESKTOP, PHONE, NewPage, OpenRoom
from tests.browser.screenshots import screenshot
from tests.client import create_room
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import Page, expect

pytestmark = pytest.mark.browser


def entry(page: Page, room_id: str) -> Any:
    """A room's entry in the page's room list."""
    return page.locator(f'#room-list li[data-room-id="{room_id}"]')


async def another_room(server: Running, title: str) -> dict[str, Any]:
    return await create_room(
        server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")], title
    )


async def test_the_rooms_page_counts_what_ben_sends_live(
    new_page: NewPage, open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    older = await another_room(web_server, "Ana & Ben, 2025")
    page = await new_page(PHONE)
    await page.goto(f"{web_server.url}/rooms.html?token={web_server.token('ana', 'Ana')}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#room-list li")).to_have_count(2)
    await expect(page).to_have_title("Your rooms · Menteo")
    mine = entry(page, web_room["id"])
    await expect(mine.locator(".room-name")).to_have_text("Ana & Ben")
    await expect(mine.locator(".room-last")).to_have_text("No messages yet")
    await expect(mine).to_have_attribute("data-unread", "0")

    # Ben, in a browser of his own, writes in the first room: Ana's list follows as it happens.
    ben = await open_room("ben")
    await ben.say("Are we still on for Thursday?")
    await expect(mine).to_have_attribute("data-unread", "1")
    await expect(mine.locator(".room-unread")).to_have_text("1")
    await expect(mine.locator(".room-last")).to_have_text("Ben: Are we still on for Thursday?")
    await expect(page).to_have_title("(1) Your rooms · Menteo")
    await ben.say("I can do 5 pm")
    await expect(mine.locator(".room-unread")).to_have_text("2")
    await expect(page).to_have_title("(2) Your rooms · Menteo")
    # The room with the newest activity comes first; a screen reader hears the count.
    await expect(page.locator("#room-list li").first).to_have_attribute(
        "data-room-id", web_room["id"]
    )
    await expect(mine.locator(".visually-hidden")).to_have_text(", 2 unread")
    await expect(entry(page, older["id"])).to_have_attribute("data-unread", "0")

    # A room made for Ana while the page is open appears at the top, live.
    newest = await another_room(web_server, "Ana & Ben, the sequel")
    await expect(page.locator("#room-list li")).to_have_count(3)
    await expect(page.locator("#room-list li").first).to_have_attribute(
        "data-room-id", newest["id"]
    )
    await screenshot(page, "room-list.png")

    # The entry opens the room, with the same access.
    await mine.locator("a").click()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#room-title")).to_have_text("Ana & Ben")
    await expect(page.locator("#messages .message")).to_have_count(2)


async def test_the_room_page_sidebar_and_title_count_the_other_rooms(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    other = await another_room(web_server, "Ana & Ben, side project")
    ana = await open_room("ana", device=DESKTOP)
    sidebar = ana.page.get_by_role("navigation", name="Your rooms")
    await expect(sidebar).to_be_visible()
    here = entry(ana.page, web_room["id"])
    await expect(here.locator("a")).to_have_attribute("aria-current", "page")
    away = entry(ana.page, other["id"])
    await expect(away).to_have_attribute("data-unread", "0")

    # Ben writes in the other room, then in this one.
    ben_other = await open_room("ben", room_id=other["id"])
    await ben_other.say("the repo is up")
    await expect(away.locator(".room-unread")).to_have_text("1")
    await expect(away.locator(".room-last")).to_have_text("Ben: the repo is up")
    await expect(ana.page).to_have_title("(1) Ana & Ben · Menteo")
    ben = await open_room("ben")
    await ben.say("hello here")
    await expect(ana.message("hello here")).to_have_count(1)
    # What comes in where Ana is looking is not unread; the sidebar shows it as the last.
    await expect(here.locator(".room-last")).to_have_text("Ben: hello here")
    await expect(here).to_have_attribute("data-unread", "0")
    await expect(ana.page).to_have_title("(1) Ana & Ben · Menteo")
    await screenshot(ana.page)

    # The other room's entry opens it.
    await away.locator("a").click()
    await ana.wait_state("live")
    await expect(ana.page.locator("#room-title")).to_have_text("Ana & Ben, side project")
    await expect(ana.message("the repo is up")).to_have_count(1)


async def test_a_phone_reaches_the_room_list_from_the_room(
    open_room: OpenRoom, web_room: dict[str, Any]
) -> None:
    ana = await open_room("ana", device=PHONE)
    await expect(ana.page.get_by_role("navigation", name="Your rooms")).to_be_hidden()
    await ana.page.get_by_role("link", name="All rooms").click()
    await expect(ana.page).to_have_url(re.compile(r"/rooms\.html\?token="))
    await expect(entry(ana.page, web_room["id"])).to_be_visible()


@pytest.mark.parametrize(
    ("age", "said", "not_said"),
    [(-120, "has expired", "not accepted"), (3600, "not accepted", "expired")],
)
async def test_the_rooms_page_says_expired_only_when_the_token_is(
    new_page: NewPage, web_server: Running, age: int, said: str, not_said: str
) -> None:
    if age < 0:
        token = web_server.token("ana", "Ana", ttl=age)
    else:  # valid for an hour, but signed by someone else
        from realtime.auth import issue_token

        token = issue_token("another-secret-" + "x" * 32, "ana", "Ana", ttl=age)
    page = await new_page()
    await page.goto(f"{web_server.url}/rooms.html?token={token}")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text(said)
    assert not_said not in (await alert.text_content() or "")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "stopped")
