"""Honest inputs and states on the room page: every limit shown before it is hit and nothing
cut silently, a clear message for a blank send, presence greyed while disconnected, a server
restart shown as "Reconnecting…" then live (never as an expired link), reconnect attempts at
most 5 s apart, and a 4401 that says "expired" only when the token has."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import pytest

from menteo_testkit.ports import free_port
from realtime.auth import issue_token
from tests.backends import make_backend
from tests.browser.roompage import NewPage, OpenRoom, RoomPage
from tests.browser.sockets import SocketGate
from tests.client import create_room
from tests.servers import SECRET, Running, ServerProcess, process_env

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import Page, expect

pytestmark = pytest.mark.browser


async def paste(page: Page, selector: str, text: str) -> None:
    """Put `text` in a field as a paste does: one insertion, through the browser's limits."""
    await page.focus(selector)
    await page.keyboard.insert_text(text)


async def test_a_long_step_title_is_kept_whole_and_counted(open_room: OpenRoom) -> None:
    ana = await open_room("ana")
    field = ana.page.get_by_label("New step")
    counter = ana.page.locator("#checklist-add-count")
    await expect(counter).to_be_hidden()  # far below the limit: nothing to say
    await paste(ana.page, "#checklist-new", "s" * 170)
    await expect(counter).to_have_text("170 of 200 characters")
    await field.fill("")
    await paste(ana.page, "#checklist-new", "x" * 600)
    # Not cut to 400 (or to anything): the 600 pasted are there, and the counter says so.
    assert len(await field.input_value()) == 600
    await expect(counter).to_have_text("600 of 200 characters: 400 too many")
    await expect(counter).to_have_attribute("data-over", "true")
    await field.press("Enter")
    error = ana.page.locator("#checklist-add-error")
    await expect(error).to_contain_text("600 characters, at most 200")
    await expect(ana.steps).to_have_count(0)


async def test_a_long_message_is_kept_whole_and_a_blank_one_explained(
    open_room: OpenRoom,
) -> None:
    ana = await open_room("ana")
    counter = ana.page.locator("#composer-count")
    error = ana.page.locator("#composer-error")

    # Blank: a message that says why nothing was sent.
    await ana.composer.fill("   \n\t  ")
    await ana.composer.press("Enter")
    await expect(error).to_contain_text("Nothing to send")
    await expect(ana.composer).to_have_attribute("aria-invalid", "true")
    await expect(ana.pending).to_have_count(0)
    await ana.composer.fill("")
    await expect(error).to_have_text("")

    # Near the limit, a counter; over it, kept whole and refused with the length typed.
    await paste(ana.page, "#composer-input", "é" * 3500)
    await expect(counter).to_have_text("3,500 of 4,000 characters")
    await paste(ana.page, "#composer-input", "🙂" * 1100)  # one character each, as counted
    assert len(await ana.composer.input_value()) == 4600  # code points: nothing was cut
    await expect(counter).to_have_text("4,600 of 4,000 characters: 600 too many")
    await ana.composer.press("Enter")
    await expect(error).to_contain_text("Too long: 4,600 characters, at most 4,000")
    await expect(ana.pending).to_have_count(0)
    await expect(ana.composer).not_to_have_value("")

    # Back under the limit: it goes, and the counter goes with it.
    await ana.composer.fill("short and sweet")
    await expect(counter).to_be_hidden()
    await ana.composer.press("Enter")
    await expect(ana.message("short and sweet")).to_have_count(1)


async def test_presence_is_greyed_while_disconnected(open_room: OpenRoom) -> None:
    gate = SocketGate()
    ana = await open_room("ana", route=gate)
    await open_room("ben")
    await expect(ana.here("ben")).to_be_visible()
    await expect(ana.member("ben")).to_have_class("person here")

    await gate.restart()  # Ana's socket is gone: who is here is not known any more
    await expect(ana.connection).not_to_have_attribute("data-state", "live")
    await expect(ana.member("ben")).to_have_class("person here stale")
    await expect(ana.here("ben")).to_have_class("person here stale")
    await expect(ana.member("ben").locator(".visually-hidden")).to_have_text(
        ", here when last connected"
    )
    gate.blocked = False
    await ana.wait_state("live")
    await expect(ana.member("ben")).to_have_class("person here")
    await expect(ana.member("ben").locator(".visually-hidden")).to_have_text(", here now")


# Every room socket the page opens, with the page's clock at that moment.
RECORD_ATTEMPTS = """
    window.__attempts = [];
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
        constructor(...args) {
            super(...args);
            if (new URL(this.url).pathname.includes("/rooms/")) window.__attempts.push(Date.now());
        }
    };
"""


async def test_reconnect_attempts_are_at_most_5_s_apart(open_room: OpenRoom) -> None:
    async def setup(page: Page) -> None:
        await page.add_init_script(RECORD_ATTEMPTS)
        await page.clock.install()

    gate = SocketGate(blocked=True)  # the server is out of reach for the whole test
    ana = await open_room("ana", route=gate, setup=setup, wait_live=False)
    await ana.wait_state("reconnecting")
    attempts: list[int] = []
    for _ in range(120):  # a minute of the page's time, a second at a time
        await ana.page.clock.run_for(500)
        attempts = await ana.page.evaluate("window.__attempts")
        if len(attempts) >= 12:
            break
    assert len(attempts) >= 12, attempts
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # The step doubles from 0.5 s, capped at 5 s (with jitter: half to all of the step);
    # a gap may be longer by the 0.5 s this loop moves the clock at a time.
    assert max(gaps) <= 5500, gaps
    assert max(gaps[-4:]) >= 2500, gaps  # the cap is reached, not a constant short wait
    text = await ana.page.locator("#connection-text").text_content()
    assert text is not None and text.startswith("Reconnecting…"), text


@pytest.mark.parametrize(
    ("case", "said", "not_said"),
    [
        ("expired", "has expired", "did not accept"),
        ("other-secret", "did not accept this access link", "expired"),
    ],
)
async def test_a_refused_token_says_expired_only_when_it_is(
    open_room: OpenRoom, web_server: Running, case: str, said: str, not_said: str
) -> None:
    if case == "expired":
        token = web_server.token("ben", "Ben", ttl=-120)
    else:
        token = issue_token("another-secret-" + "x" * 32, "ben", "Ben")
    ben = await open_room("ben", token=token, wait_live=False)
    await ben.wait_state("stopped")
    alert = ben.page.get_by_role("alert")
    await expect(alert).to_contain_text(said)
    assert not_said not in (await alert.text_content() or "")


# Everything the top bar and the banner ever said, kept by the page itself.
RECORD_SAID = """
    window.__said = [];
    new MutationObserver(() => {
        for (const id of ["connection-text", "fatal"]) {
            const node = document.getElementById(id);
            if (node && node.textContent) window.__said.push(node.textContent);
        }
    }).observe(document, {subtree: true, childList: true, characterData: true});
"""


async def test_a_server_restart_is_reconnecting_then_live_never_an_expired_link(
    new_page: NewPage, tmp_path: Path
) -> None:
    backend = await make_backend("sqlite", tmp_path)
    server = ServerProcess(process_env(backend), port=free_port())
    await server.start()
    try:
        service = {"authorization": "Bearer " + issue_token(SECRET, "backend", "B", role="service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")], "Restarts")
        token = issue_token(SECRET, "ana", "Ana")
        ana = RoomPage(await new_page())
        await ana.page.add_init_script(RECORD_SAID)
        await ana.page.goto(f"{server.url}/?room={room['id']}&token={token}")
        await ana.wait_state("live")
        await ana.say("before the restart")
        await expect(ana.message("before the restart")).to_have_count(1)

        await server.stop()  # the socket closes (1012), then every attempt fails: it is down
        await expect(ana.connection).to_have_attribute("data-state", "reconnecting")
        await expect(ana.page.locator("#connection-text")).to_contain_text("Reconnecting…")
        await expect(ana.page.locator("#connection-text")).to_contain_text("Next try in")
        await expect(ana.page.get_by_role("alert")).to_be_hidden()
        await server.start()  # the same port and database
        await ana.wait_state("live")
        await ana.say("after the restart")
        await expect(ana.message("after the restart")).to_have_count(1)
        said: list[str] = await ana.page.evaluate("window.__said")
        assert any(s.startswith("Reconnecting…") for s in said), said
        assert not [s for s in said if "expired" in s or "not accept" in s], said
        await expect(ana.page.get_by_role("alert")).to_be_hidden()
        await expect(ana.page.locator("#composer-input")).to_be_enabled()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            await server.stop()
