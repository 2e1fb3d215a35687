"""The shared notes panel (web/js/notes.js and its Yjs bundle) in a real browser: two people
type at once, both end with the same text, the server's; each sees the other's cursor and
name.

Needs web/dist/notes.bundle.js: the ``notes_bundle`` fixture builds it with npm when it is
missing or out of date (skipped without node/npm, failed on CI). Every wait is on the page
with a timeout: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser.roompage import PHONE, OpenRoom, RoomPage
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("notes_bundle")]


async def server_notes(web_server: Running, room_id: str) -> str:
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{web_server.url}/api/rooms/{room_id}/notes", headers=web_server.service()
        )
    assert resp.status_code == 200, resp.text
    text: str = resp.json()["text"]
    return text


async def open_notes(page: RoomPage) -> None:
    notes_tab = page.page.get_by_role("tab", name="Notes")
    if await notes_tab.is_visible():  # a phone shows one view at a time: the notes are a tab
        await notes_tab.click()
    await expect(page.notes).to_have_attribute("data-status", "synced")
    await expect(page.notes_editor).to_be_visible()


async def test_two_people_type_and_converge_on_the_servers_text(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ana = await open_room("ana")
    ben = await open_room("ben", device=PHONE)
    for page in (ana, ben):
        await open_notes(page)
        await expect(page.notes.get_by_role("heading", name="Shared notes")).to_be_visible()
        await expect(page.notes_editor).to_have_attribute("aria-label", "Shared notes")
        # The notes socket: /rooms/{id}/notes (y-websocket's URL for room "notes"), its
        # token offered as a subprotocol, never in the URL.
        [url] = page.notes_sockets
        parts = urlsplit(url)
        assert parts.path == f"/rooms/{web_room['id']}/notes"
        assert "token" not in parts.query

    await ana.notes_editor.click()
    await ana.page.keyboard.type("Agenda from Ana")
    await ben.wait_notes_text("Agenda from Ana")

    # Each sees where the other is, with the other's name.
    await ben.notes_editor.click()
    await ben.page.keyboard.press("Control+End")
    await expect(ana.notes.locator(".cm-ySelectionInfo")).to_have_text("Ben")
    await expect(ana.notes.locator(".cm-ySelectionInfo")).to_be_visible()
    await expect(ben.notes.locator(".cm-ySelectionInfo")).to_have_text("Ana")

    # Both type at the same time, at either end of the text.
    async def ana_types() -> None:
        await ana.page.keyboard.press("Control+Home")
        await ana.page.keyboard.type("Top: ")

    async def ben_types() -> None:
        await ben.page.keyboard.press("Control+End")
        await ben.page.keyboard.press("Enter")
        await ben.page.keyboard.type("Ben's line")

    await asyncio.gather(ana_types(), ben_types())
    expected = "Top: Agenda from Ana\nBen's line"
    await ana.wait_notes_text(expected)
    await ben.wait_notes_text(expected)
    # An update reaches the other person only once stored: both texts are the server's.
    assert await server_notes(web_server, web_room["id"]) == expected
    for page in (ana, ben):
        await expect(page.notes_editor.locator(".cm-line")).to_have_count(2)
        await expect(page.notes_editor.locator(".cm-line").nth(1)).to_contain_text("Ben's line")

    # Undo takes back one's own typing only (Yjs' undo manager), for everyone.
    await ben.page.keyboard.press("Control+z")
    await ana.wait_notes_text("Top: Agenda from Ana")
    await ben.wait_notes_text("Top: Agenda from Ana")

    # A page opened later gets the whole document.
    late = await open_room("ana")
    await open_notes(late)
    await late.wait_notes_text("Top: Agenda from Ana")
    assert await server_notes(web_server, web_room["id"]) == "Top: Agenda from Ana"


async def test_notes_edits_made_offline_sync_when_back(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ana = await open_room("ana")
    ben = await open_room("ben")
    for page in (ana, ben):
        await open_notes(page)

    await ben.page.context.set_offline(True)
    await expect(ben.notes).to_have_attribute("data-status", "disconnected")
    await expect(ben.notes.locator(".notes-status")).to_contain_text("Offline")
    # The other cursor goes with the connection.
    await expect(ben.notes.locator(".cm-ySelectionInfo")).to_have_count(0)
    await ben.notes_editor.click()
    await ben.page.keyboard.type("written offline")
    await ana.notes_editor.click()
    await ana.page.keyboard.type("online: ")
    await ana.wait_notes_text("online: ")

    await ben.page.context.set_offline(False)
    await expect(ben.notes).to_have_attribute("data-status", "synced")
    # Both edits survive, merged the same way everywhere (which one comes first is Yjs'
    # choice, the same on every side).
    await ana.page.wait_for_function(
        """async () => (await import("/js/notes.js")).notesText().includes("written offline")"""
    )
    final = await ana.notes_text()
    assert final in ("online: written offline", "written offlineonline: ")
    await ben.wait_notes_text(final)
    assert await server_notes(web_server, web_room["id"]) == final
    await expect(ana.notes.locator(".cm-ySelectionInfo")).to_have_text("Ben")
