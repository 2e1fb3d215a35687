"""Search over the room's history from the room page (web/js/roomsearch.js) and older pages
(web/js/olderhistory.js): a result jumps to its message, loading the older pages it needs;
"Show older messages" pages back to the room's start; the server's rules on a query are said
before asking. A real server; every wait is on the page."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends import make_backend
from tests.browser.roompage import OpenRoom, RoomPage
from tests.servers import Running, make_settings, run_server

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

pytestmark = pytest.mark.browser

FILLER = 159  # after the first message: the welcome shows 50, then pages of 100 go back


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def web_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    """The page's server, on each backend (SQLite FTS5 and PostgreSQL full text search rank
    and stem apart), whose rate limits let a test write 160 messages in a row."""
    backend = await make_backend(request.param, tmp_path)
    fast = {"rate_per_second": 1000.0, "rate_burst": 1000}
    fast |= {"user_rate_per_second": 1000.0, "user_rate_burst": 1000}
    async with run_server(make_settings(backend, **fast)) as running:
        yield running


async def fill_room(web_server: Running, room_id: str) -> list[int]:
    """The needle first, then FILLER messages; their seqs."""
    from tests.client import RoomClient

    ana = await RoomClient.connect(web_server.ws, room_id, web_server.token("ana", "Ana"))
    seqs = [await ana.chat("needle", "the needle in the haystack")]
    for i in range(FILLER):
        seqs.append(await ana.chat(f"f{i}", f"filler message {i}"))
    await ana.close()
    return seqs


def search_box(page: RoomPage) -> Any:
    return page.page.get_by_role("searchbox", name="Search messages")


async def test_a_search_result_jumps_to_a_message_older_pages_had_to_bring(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    seqs = await fill_room(web_server, web_room["id"])
    ben = await open_room("ben")
    await expect(ben.messages).to_have_count(50)
    await expect(ben.message("the needle in the haystack")).to_have_count(0)

    await search_box(ben).fill("needles")  # stemmed: "needles" finds "needle"
    await search_box(ben).press("Enter")
    results = ben.page.get_by_role("list", name="Search results").get_by_role("button")
    await expect(results).to_have_count(1)
    await expect(results.locator("mark")).to_have_text(["needle"])
    await expect(results.first).to_contain_text("Ana")
    await results.first.click()

    needle = ben.message("the needle in the haystack")
    await expect(needle).to_have_class(re.compile(r"\bfound\b"))
    await expect(needle).to_be_focused()
    await expect(needle).to_be_in_viewport()
    # Two older pages came in between: every message once, in order.
    await expect(ben.messages).to_have_count(len(seqs))
    assert await ben.seqs() == seqs
    await expect(ben.page.locator(".older-status")).to_have_text("This is the start of the room.")
    await expect(ben.page.get_by_role("button", name="Show older messages")).to_be_hidden()


async def test_more_results_and_the_query_rules_before_asking(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    await fill_room(web_server, web_room["id"])
    ben = await open_room("ben")
    asked: list[str] = []
    ben.page.on("request", lambda r: "/search?" in r.url and asked.append(r.url))
    status = ben.page.locator(".room-search-status")

    await search_box(ben).fill("«» !!")
    await search_box(ben).press("Enter")
    await expect(status).to_have_text("Type a word to search for (letters or digits).")
    await expect(search_box(ben)).to_have_attribute("aria-invalid", "true")
    await search_box(ben).fill("x" * 201)
    await search_box(ben).press("Enter")
    await expect(status).to_have_text("Too long: 201 characters, at most 200.")
    assert asked == []

    await search_box(ben).fill("filler")
    await search_box(ben).press("Enter")
    results = ben.page.get_by_role("list", name="Search results").get_by_role("button")
    await expect(results).to_have_count(20)
    await expect(status).to_have_text("20+ messages match “filler”.")
    await ben.page.get_by_role("button", name="More results").click()
    await expect(results).to_have_count(40)
    assert len(asked) == 2 and "before=" in asked[1]
    # Escape clears the results.
    await search_box(ben).press("Escape")
    await expect(results).to_have_count(0)
    await expect(search_box(ben)).to_have_value("")


async def test_show_older_messages_pages_back_to_the_start(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    seqs = await fill_room(web_server, web_room["id"])
    ben = await open_room("ben")
    older = ben.page.get_by_role("button", name="Show older messages")
    await expect(ben.messages).to_have_count(50)
    await older.click()
    await expect(ben.messages).to_have_count(150)
    await older.click()
    await expect(ben.messages).to_have_count(len(seqs))
    await expect(older).to_be_hidden()
    assert await ben.seqs() == seqs
    await expect(ben.page.locator(".older-status")).to_have_text("This is the start of the room.")
