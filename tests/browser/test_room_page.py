"""The room page (web/) in a real browser: two members chat, see each other and stay in sync
through dropped connections, offline spells and reloads.

Debian's Chromium driven by Playwright. Every wait is on the page (a selector, an attribute,
a text) with a timeout: nothing sleeps.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

import pytest

from menteo_testkit.waits import wait_until
from tests.browser.roompage import PHONE, OpenRoom, RoomPage
from tests.browser.screenshots import screenshot
from tests.browser.sockets import SocketGate, query
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.browser

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
HOSTILE = '<img src=x onerror="window.__pwned=1"><b>bold</b> & <script>window.__pwned=2</script>'


async def test_members_chat_see_each_other_and_typing(open_room: OpenRoom) -> None:
    ana = await open_room("ana")
    ben = await open_room("ben", device=PHONE)

    for page in (ana, ben):
        await expect(page.page.locator("#room-title")).to_have_text("Ana & Ben")
        await expect(page.member("ana")).to_contain_text("mentor")
        await expect(page.member("ben")).to_contain_text("mentee")
        await expect(page.here("ana")).to_be_visible()
        await expect(page.here("ben")).to_be_visible()
    await expect(ana.member("ana")).to_contain_text("(you)")
    await expect(ben.here("ben")).to_contain_text("(you)")
    await expect(ana.page).to_have_title("Ana & Ben · Menteo")

    # Typing shows on the other side, and goes away when the message is sent.
    await ana.composer.press_sequentially("hello Be")
    await expect(ben.page.locator("#typing")).to_have_text("Ana is typing…")
    await ana.composer.press_sequentially("n")
    await ana.composer.press("Enter")
    await expect(ana.composer).to_have_value("")
    await expect(ben.message("hello Ben")).to_have_count(1)
    await expect(ben.page.locator("#typing")).to_have_text("")

    got = ben.message("hello Ben")
    await expect(got.locator(".author")).to_have_text("Ana")
    await expect(got).not_to_have_class("message mine")
    await expect(got.locator("time")).to_have_attribute("datetime", ISO_UTC)
    await expect(got.locator("time")).not_to_have_text("")
    mine = ana.message("hello Ben")
    await expect(mine).to_have_class("message mine")
    await expect(mine.locator(".you")).to_have_text("(you)")

    # Shift+Enter is a new line, Enter sends.
    await ben.composer.fill("line one")
    await ben.composer.press("Shift+Enter")
    await ben.composer.press_sequentially("line two")
    await expect(ben.composer).to_have_value("line one\nline two")
    await ben.composer.press("Enter")
    await expect(ana.messages).to_have_count(2)
    assert (await ana.bodies())[1] == "line one\nline two"
    await screenshot(ana.page)

    # HTML in a message is text: no element is made of it, no script runs.
    await ben.say(HOSTILE)
    await expect(ana.messages).to_have_count(3)
    await expect(ben.messages).to_have_count(3)
    for page in (ana, ben):
        body = page.messages.nth(2).locator(".body")
        assert await body.text_content() == HOSTILE
        await expect(body.locator("*")).to_have_count(0)
        assert await page.page.evaluate("window.__pwned") is None

    # Each message once, in order, the same on both sides.
    assert await ana.seqs() == await ben.seqs() == [1, 2, 3]
    assert await ana.bodies() == await ben.bodies()
    await expect(ana.page.locator("#announcer p").last).to_have_text(f"Ben: {HOSTILE}")

    # Leaving shows on the other side.
    await ben.page.close()
    await expect(ana.here("ben")).to_have_count(0)
    await expect(ana.member("ben")).to_have_class("person away")


async def test_unread_divider_while_the_tab_is_hidden(open_room: OpenRoom) -> None:
    ana = await open_room("ana")
    ben = await open_room("ben")
    await ana.say("before you left")
    await expect(ben.message("before you left")).to_have_count(1)

    await set_hidden(ben, True)
    await ana.say("while you were away")
    await ana.say("and another")
    await expect(ben.messages).to_have_count(3)
    divider = ben.page.locator("#messages .unread-divider")
    await expect(divider).to_have_count(1)
    following = divider.locator("xpath=following-sibling::li[1]")
    await expect(following.locator(".body")).to_have_text("while you were away")
    await expect(ben.page).to_have_title("(2) Ana & Ben · Menteo")
    await expect(ana.page.locator("#messages .unread-divider")).to_have_count(0)

    # Back: the count goes, the divider stays to show where the new messages start.
    await set_hidden(ben, False)
    await expect(ben.page).to_have_title("Ana & Ben · Menteo")
    await expect(divider).to_have_count(1)
    # Away again: the old divider has been seen.
    await set_hidden(ben, True)
    await expect(divider).to_have_count(0)


async def test_message_written_offline_is_delivered_once(
    open_room: OpenRoom, web_server: Running
) -> None:
    ana = await open_room("ana")
    ben = await open_room("ben", device=PHONE)
    await ana.say("first")
    await expect(ben.message("first")).to_have_count(1)
    first_socket = ben.sockets[-1]
    assert "since" not in query(first_socket)

    await ben.page.context.set_offline(True)
    await ben.wait_state("offline")
    await ben.say("written offline")
    await expect(ben.pending).to_have_count(1)
    await expect(ben.pending.locator(".status")).to_contain_text("Not sent yet")
    await expect(ben.page.locator("#outbox-note")).to_contain_text("1 message waiting")
    [entry] = await ben.outbox()
    assert entry["body"] == "written offline"
    await ana.say("while ben is offline")
    await expect(ana.messages).to_have_count(2)

    await ben.page.context.set_offline(False)
    await ben.wait_state("live")
    # Resumed after the last seq it had seen, in the same epoch.
    resumed = query(ben.sockets[-1])
    assert resumed["since"] == "1" and resumed["epoch"]
    await expect(ben.pending).to_have_count(0)
    await expect(ben.message("written offline")).to_have_count(1)
    await expect(ana.message("written offline")).to_have_count(1)
    await expect(ben.message("while ben is offline")).to_have_count(1)
    assert await ben.outbox() == []
    # Sent with the id it was written with.
    await expect(ana.message("written offline")).to_have_attribute("data-id", entry["id"])

    # Anything doubled would have arrived before this.
    await ana.say("marker")
    for page in (ana, ben):
        await expect(page.message("marker")).to_have_count(1)
        assert await page.bodies() == ["first", "while ben is offline", "written offline", "marker"]
        assert await page.seqs() == [1, 2, 3, 4]


async def test_outbox_survives_a_reload_and_keeps_its_ids(open_room: OpenRoom) -> None:
    ana = await open_room("ana")
    gate = SocketGate(blocked=True)  # the server is out of reach: the socket closes at once
    ben = await open_room("ben", route=gate, wait_live=False)
    await ben.wait_state("reconnecting")
    await ben.say("survives a reload")
    await expect(ben.pending).to_have_count(1)

    async def stored() -> bool:  # the page shows the message, then writes its outbox
        return len(await ben.outbox()) == 1

    await wait_until(stored, "the pending message in localStorage's outbox")
    [entry] = await ben.outbox()

    await ben.page.reload()
    await expect(ben.pending).to_have_count(1)
    await expect(ben.pending.locator(".body")).to_have_text("survives a reload")
    await expect(ben.pending).to_have_attribute("data-id", entry["id"])
    assert await ben.outbox() == [entry]

    gate.blocked = False
    await ben.wait_state("live")  # the next attempt of the backoff gets through
    await expect(ben.pending).to_have_count(0)
    for page in (ana, ben):
        await expect(page.message("survives a reload")).to_have_count(1)
        await expect(page.message("survives a reload")).to_have_attribute("data-id", entry["id"])
    assert await ben.outbox() == []


async def test_resumes_after_a_server_restart_close(open_room: OpenRoom) -> None:
    ana = await open_room("ana")
    gate = SocketGate()
    ben = await open_room("ben", route=gate)
    await ana.say("one")
    await expect(ben.message("one")).to_have_count(1)

    # The server goes away (1012): ben reconnects with since, and gets what it missed once.
    await gate.restart()
    await expect(ben.connection).not_to_have_attribute("data-state", "live")
    for body in ("two", "three", "four"):
        await ana.say(body)
    await expect(ana.messages).to_have_count(4)
    gate.blocked = False
    await ben.wait_state("live")
    await expect(ben.messages).to_have_count(4)
    assert "since" not in query(gate.sockets[0].url)
    assert query(gate.sockets[-1].url)["since"] == "1"
    assert await ben.bodies() == ["one", "two", "three", "four"]
    assert await ben.seqs() == [1, 2, 3, 4]
    await ben.say("back")
    await expect(ana.message("back")).to_have_count(1)
    assert await ana.seqs() == await ben.seqs() == [1, 2, 3, 4, 5]


COUNT_SOCKETS = """
    window.__sockets = 0;
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
        constructor(...args) {
            super(...args);
            // The room's sockets only (the room list's inbox socket has its own life).
            if (new URL(this.url).pathname.includes("/rooms/")) window.__sockets += 1;
        }
    };
"""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad-token", "did not accept this access link"),
        ("not-a-member", "not a member of this room"),
        ("no-room", "does not exist"),
    ],
)
async def test_refused_sockets_say_why_and_do_not_reconnect(
    open_room: OpenRoom, web_server: Running, case: str, expected: str
) -> None:
    async def setup(page: Page) -> None:
        await page.add_init_script(COUNT_SOCKETS)
        await page.clock.install()  # the page's timers run when we say so

    kw: dict[str, Any] = {"wait_live": False, "setup": setup}
    if case == "bad-token":
        kw["token"] = "not.a.token"
    elif case == "not-a-member":
        kw["token"] = web_server.token("carl", "Carl")
    else:
        kw["room_id"] = "no-such-room"
    page = await open_room("ben", **kw)
    await page.wait_state("stopped")
    await expect(page.page.get_by_role("alert")).to_contain_text(expected)
    await expect(page.composer).to_be_disabled()
    await expect(page.page.locator("#retry")).to_be_hidden()
    # Two minutes pass for the page: far past the longest backoff, and no new attempt.
    await page.page.clock.run_for(120_000)
    assert await page.page.evaluate("window.__sockets") == 1
    await expect(page.connection).to_have_attribute("data-state", "stopped")


async def test_join_form_when_the_link_has_no_token(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    page = await open_room("ben", query=f"room={web_room['id']}", wait_live=False)
    await expect(page.page.locator("#join")).to_be_visible()
    await expect(page.page.locator("#room")).to_be_hidden()
    await expect(page.page.get_by_label("Room ID")).to_have_value(web_room["id"])
    await expect(page.page.get_by_label("Access token")).to_be_focused()
    await page.page.get_by_label("Access token").fill(web_server.token("ben", "Ben"))
    await page.page.get_by_role("button", name="Open room").click()
    await page.wait_state("live")
    await expect(page.here("ben")).to_be_visible()


# Helpers ------------------------------------------------------------------------------


async def set_hidden(page: RoomPage, hidden: bool) -> None:
    """Hide or show the tab as far as the page can tell (headless tabs are always shown)."""
    await page.page.evaluate(
        """hidden => {
            Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
            Object.defineProperty(document, "visibilityState",
                {value: hidden ? "hidden" : "visible", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


async def test_edits_deletes_and_replies_show_live_and_after_a_reload(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    from tests.client import RoomClient
    from tests.test_chat_changes import delete, edit

    ben = await open_room("ben")
    ana = await RoomClient.connect(web_server.ws, web_room["id"], web_server.token("ana", "Ana"))
    first = await ana.chat("m1", "see you Tursday")
    gone = await ana.chat("m2", "my password is hunter2")
    await ana.send({"type": "chat.send", "id": "m3", "body": "which day?", "reply_to": first})
    await expect(ben.messages).to_have_count(3)
    assert (await edit(ana, "e1", first, "see you Thursday"))["type"] == "ack"
    assert (await delete(ana, "d1", gone))["type"] == "ack"
    for _ in range(2):  # live, then from the welcome's history after a reload
        await expect(ben.message("see you Thursday").locator(".edited")).to_have_text("(edited)")
        deleted = ben.messages.nth(1)
        await expect(deleted).to_have_class(re.compile(r"\bdeleted\b"))
        await expect(deleted.locator(".body")).to_have_text("Message deleted")
        quote = ben.message("which day?").locator(".reply")
        await expect(quote).to_have_text("↩ Reply to Ana: “see you Thursday”")
        assert "hunter2" not in await ben.page.content()
        await ben.page.reload()
        await ben.wait_state("live")
