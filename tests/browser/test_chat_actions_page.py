"""Reply, edit and delete from the room page (web/js/messageactions.js, replies.js), shown
live to the other member; only the controls the reader may use are offered (web/js/chatrules.js);
the platform's messages, member changes and an archived room shown as such
(web/js/systemmessages.js).

Two browser contexts where two people are involved; a real server; every wait is on the page."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.backends import make_backend
from tests.browser.axe import blocking
from tests.browser.roompage import OpenRoom, RoomPage
from tests.servers import Running, make_settings, run_server

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Locator

pytestmark = pytest.mark.browser


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def web_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    """The page's server on each backend (with Redis, every event goes through the broker)."""
    backend = await make_backend(request.param, tmp_path)
    async with run_server(make_settings(backend)) as running:
        yield running


def action(page: RoomPage, body: str, name: str) -> Locator:
    """The button ``name`` (Reply, Edit, Delete) under the message ``body``."""
    return page.message(body).locator(".message-actions").get_by_role("button", name=name)


async def rest(server: Running, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        resp = await http.request(
            method, server.url + path, json=body, headers=server.service(), timeout=10
        )
    assert resp.status_code < 300, resp.text
    return resp


async def test_edit_delete_and_reply_from_the_page_show_live_to_the_other_member(
    open_room: OpenRoom,
) -> None:
    ana = await open_room("ana")
    ben = await open_room("ben")
    await ana.say("see you Tursday")
    await ana.say("my password is hunter2")
    await expect(ben.messages).to_have_count(2)

    # Ben may answer Ana's messages, not change them; Ana may do all three with hers.
    for body in ("see you Tursday", "my password is hunter2"):
        await expect(action(ben, body, "Reply")).to_have_count(1)
        await expect(action(ben, body, "Edit")).to_have_count(0)
        await expect(action(ben, body, "Delete")).to_have_count(0)
        for name in ("Reply", "Edit", "Delete"):
            await expect(action(ana, body, name)).to_have_count(1)

    # Ana edits in place: Enter saves; Ben sees the new text, marked edited, at once.
    await action(ana, "see you Tursday", "Edit").click()
    editor = ana.page.get_by_role("textbox", name="Edit message")
    await expect(editor).to_be_focused()
    await expect(editor).to_have_value("see you Tursday")
    await editor.fill("see you Thursday")
    await editor.press("Enter")
    for page in (ana, ben):
        await expect(page.message("see you Thursday").locator(".edited")).to_have_text("(edited)")
    await expect(ben.message("see you Tursday")).to_have_count(0)

    # Escape leaves an edit without sending anything.
    await action(ana, "see you Thursday", "Edit").click()
    await editor.fill("never sent")
    await editor.press("Escape")
    await expect(editor).to_have_count(0)
    await expect(ana.message("see you Thursday")).to_have_count(1)

    # Delete asks first; Cancel keeps the message.
    dialog = ana.page.get_by_role("dialog", name="Delete this message?")
    await action(ana, "my password is hunter2", "Delete").click()
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("my password is hunter2")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(action(ana, "my password is hunter2", "Delete")).to_be_focused()
    await expect(ben.message("my password is hunter2")).to_have_count(1)

    # Confirmed: gone for both, its text nowhere on Ben's page.
    await action(ana, "my password is hunter2", "Delete").click()
    await dialog.get_by_role("button", name="Delete").click()
    for page in (ana, ben):
        deleted = page.messages.nth(1)
        await expect(deleted).to_have_class(re.compile(r"\bdeleted\b"))
        await expect(deleted.locator(".body")).to_have_text("Message deleted")
        await expect(deleted.locator(".message-actions button")).to_have_count(0)
    assert "hunter2" not in await ben.page.content()

    # Ben answers the edited message: the reply shows what it answers, on both sides.
    await action(ben, "see you Thursday", "Reply").click()
    draft = ben.page.locator("#reply-draft")
    await expect(draft).to_contain_text("Replying to Ana")
    await expect(ben.composer).to_be_focused()
    await ben.composer.fill("which time?")
    await ben.composer.press("Enter")
    await expect(draft).to_be_hidden()
    for page in (ana, ben):
        quote = page.message("which time?").locator(".reply-quote")
        await expect(quote).to_have_text("↩ Reply to Ana: “see you Thursday”")
    # The next message is not a reply any more.
    await ben.say("and where?")
    await expect(ana.message("and where?")).to_have_count(1)
    await expect(ana.message("and where?").locator(".reply-quote")).to_have_count(0)

    # The quote shows the message it answers.
    await ana.message("which time?").locator(".reply-quote").click()
    await expect(ana.message("see you Thursday")).to_have_class(re.compile(r"\bfound\b"))
    await expect(ana.message("see you Thursday")).to_be_focused()


async def test_a_reply_can_be_cancelled_and_a_blank_edit_is_refused_on_the_page(
    open_room: OpenRoom,
) -> None:
    ana = await open_room("ana")
    await ana.say("hello")
    await action(ana, "hello", "Reply").click()
    await expect(ana.page.locator("#reply-draft")).to_be_visible()
    await ana.composer.press("Escape")
    await expect(ana.page.locator("#reply-draft")).to_be_hidden()
    await ana.say("not a reply")
    await expect(ana.message("not a reply")).to_have_count(1)
    await expect(ana.message("not a reply").locator(".reply-quote")).to_have_count(0)

    await action(ana, "hello", "Edit").click()
    editor = ana.page.get_by_role("textbox", name="Edit message")
    await editor.fill("   ")
    await editor.press("Enter")
    await expect(ana.message("hello").locator(".edit-error")).to_have_text(
        "Write something first: a message cannot be blank."
    )
    await expect(editor).to_have_attribute("aria-invalid", "true")
    # The limit shows before it is reached, and past it nothing is cut: it is refused, said so.
    count = ana.message("hello").locator(".edit-count")
    await editor.fill("x" * 3599)
    await expect(count).to_be_hidden()
    await editor.fill("x" * 3600)
    await expect(count).to_have_text("3600 of 4000 characters")
    await editor.fill("é" * 4001)
    await expect(count).to_have_text("4001 of 4000 characters")
    await editor.press("Enter")
    await expect(ana.message("hello").locator(".edit-error")).to_have_text(
        "Too long: 4001 characters, at most 4000."
    )
    await expect(editor).to_have_value("é" * 4001)
    assert await ana.outbox("menteo.ops.v1:") == []


async def test_the_platforms_messages_and_member_changes_are_shown_as_such(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    room = web_room["id"]
    ana = await open_room("ana")
    ben = await open_room("ben")
    await rest(
        web_server, "POST", f"/api/rooms/{room}/messages", {"id": "n-1", "body": "Session at 10"}
    )
    for page in (ana, ben):
        notice = page.message("Session at 10")
        await expect(notice).to_have_class(re.compile(r"\bsystem\b"))
        await expect(notice.locator(".author")).to_have_text("Platform notice")
        await expect(notice.locator(".message-actions button")).to_have_text(["Reply"])

    member = {"name": "Cy", "role": "mentee"}
    await rest(web_server, "PUT", f"/api/rooms/{room}/members/cy", member)
    await ana.say("welcome Cy")
    await rest(web_server, "PUT", f"/api/rooms/{room}/members/cy", {**member, "role": "mentor"})
    await rest(web_server, "DELETE", f"/api/rooms/{room}/members/cy")
    await rest(web_server, "PATCH", f"/api/rooms/{room}", {"title": "Ana & Ben, year two"})
    events = ben.page.locator("#messages .room-event")
    await expect(events).to_have_text(
        [
            "Cy joined the room as mentee.",
            "Cy is now the room's mentor.",
            "Cy was removed from the room.",
            "The room was renamed “Ana & Ben, year two”.",
        ]
    )
    for page in (ana, ben):
        await expect(page.page.locator("#room-title")).to_have_text("Ana & Ben, year two")
        await expect(page.page).to_have_title("Ana & Ben, year two · Menteo")
    # In the room's order: the message came between the first two changes.
    after_join = events.first.locator("xpath=following-sibling::li[1]")
    await expect(after_join.locator(".body")).to_have_text("welcome Cy")
    await expect(ben.member("cy")).to_have_count(0)


async def expect_read_only(page: RoomPage) -> None:
    banner = page.page.locator("#archived-note")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("This room is archived")
    await expect(page.composer).to_be_disabled()
    await expect(page.page.get_by_role("button", name="Send")).to_be_disabled()
    await expect(page.message("last words")).to_have_count(1)  # still readable
    await expect(page.message("last words").locator(".message-actions")).to_have_count(0)
    # The roadmap too: no control that the server would refuse.
    step = page.step("Read the guide")
    await expect(page.page.get_by_label("New step")).to_be_disabled()
    await expect(step.locator(".step-check")).to_be_disabled()
    for control in (".step-rename", ".step-remove", ".step-up", ".step-down"):
        await expect(step.locator(control)).to_be_hidden()
    await expect(page.checklist).to_contain_text("The room is archived: the roadmap is read-only.")


async def test_an_archived_room_is_read_only_on_the_page(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    room = web_room["id"]
    ana = await open_room("ana")
    ben = await open_room("ben")
    await ana.say("last words")
    await ana.add_step("Read the guide")
    await expect(ben.message("last words")).to_have_count(1)
    await expect(ben.step("Read the guide")).to_have_count(1)
    await expect(ana.step("Read the guide").locator(".step-rename")).to_be_visible()
    await rest(web_server, "PATCH", f"/api/rooms/{room}", {"archived": True})

    for page in (ana, ben):
        await expect_read_only(page)
        await expect(page.page.locator("#messages .room-event")).to_have_text(
            ["The room was archived: it is read-only now."]
        )
    # A page opened later knows from its welcome.
    await ben.page.reload()
    await ben.wait_state("live")
    await expect(ben.message("last words")).to_have_count(1)
    await expect_read_only(ben)

    await rest(web_server, "PATCH", f"/api/rooms/{room}", {"archived": False})
    for page in (ana, ben):
        await expect(page.page.locator("#archived-note")).to_be_hidden()
        await expect(page.composer).to_be_enabled()
    await expect(action(ana, "last words", "Edit")).to_have_count(1)
    await expect(ana.page.get_by_label("New step")).to_be_enabled()
    await expect(ana.step("Read the guide").locator(".step-rename")).to_be_visible()
    await ben.say("back again")
    await expect(ana.message("back again")).to_have_count(1)


async def test_the_chat_controls_pass_axe(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    room = web_room["id"]
    ana = await open_room("ana")
    ben = await open_room("ben")
    await ana.say("a message with every control")
    await ben.say("and a reply target")
    await rest(web_server, "POST", f"/api/rooms/{room}/messages", {"id": "n-1", "body": "Notice"})
    await rest(web_server, "PUT", f"/api/rooms/{room}/members/cy", {"name": "Cy", "role": "mentee"})
    await expect(ana.page.locator("#messages .room-event")).to_have_count(1)
    for page in (ana, ben):  # "Seen by …" under some message on each side
        await expect(page.page.locator("#messages .seen")).to_have_count(1)

    # Search results, a reply being written, an edit open: all of them at once.
    await ana.page.get_by_role("searchbox", name="Search messages").fill("message")
    await ana.page.get_by_role("searchbox", name="Search messages").press("Enter")
    await expect(ana.page.locator(".room-search-results button")).to_have_count(1)
    await action(ana, "and a reply target", "Reply").click()
    await action(ana, "a message with every control", "Edit").click()
    parts = ["#messages-scroll", ".room-search", "#reply-draft"]
    assert await blocking(ana.page, parts) == ""
    assert await blocking(ben.page, "#messages-scroll") == ""

    # The delete confirmation.
    await ana.page.get_by_role("textbox", name="Edit message").press("Escape")
    await action(ana, "a message with every control", "Delete").click()
    await expect(ana.page.get_by_role("dialog")).to_be_visible()
    assert await blocking(ana.page, ".delete-dialog") == ""
    await ana.page.get_by_role("dialog").get_by_role("button", name="Cancel").click()

    # An archived room's banner and disabled message box.
    await rest(web_server, "PATCH", f"/api/rooms/{room}", {"archived": True})
    await expect(ana.page.locator("#archived-note")).to_be_visible()
    assert await blocking(ana.page, ["#archived-note", "#composer", "#messages-scroll"]) == ""
