"""The roadmap checklist panel (web/js/checklistpanel.js) in a real browser: a mentor and a
mentee add, tick, verify, rename, reorder (keyboard and drag and drop) and remove steps, and
both pages end with the server's list; ticks made offline are kept, across a reload, and
sent once the room is back.

Debian's Chromium driven by Playwright. Every wait is on the page (a selector, an attribute,
a text) with a timeout: nothing sleeps.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import httpx
import pytest

from tests.browser.roompage import PHONE, OpenRoom, RoomPage
from tests.browser.sockets import SocketGate
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

pytestmark = pytest.mark.browser


async def server_checklist(web_server: Running, room_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{web_server.url}/api/rooms/{room_id}/checklist", headers=web_server.service()
        )
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def expect_titles(page: RoomPage, titles: list[str]) -> None:
    """The page shows exactly these steps, in this order, none of them pending."""
    await expect(page.steps.locator(".step-title")).to_have_text(titles)
    await expect(page.pending_steps).to_have_count(0)


async def test_mentor_and_mentee_build_tick_verify_and_reorder(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ana = await open_room("ana")  # the mentor
    ben = await open_room("ben")  # the mentee
    for page in (ana, ben):
        await expect(page.checklist.get_by_role("heading", name="Roadmap")).to_be_visible()
        await expect(page.checklist.locator(".checklist-empty")).to_have_text(
            "No steps yet: add the first one below."
        )
        await expect(page.checklist.locator(".progress-text")).to_have_text(
            "0 of 0 done · 0 verified"
        )

    # Both add steps; each lands at the end of the list as its author saw it.
    await ana.add_step("Set goals")
    await expect(ana.page.get_by_label("New step")).to_have_value("")
    await ana.add_step("Read the guide")
    await expect_titles(ana, ["Set goals", "Read the guide"])
    await expect_titles(ben, ["Set goals", "Read the guide"])
    await ben.add_step("Ship a project")
    for page in (ana, ben):
        await expect_titles(page, ["Set goals", "Read the guide", "Ship a project"])
        await expect(page.checklist.locator(".progress-text")).to_have_text(
            "0 of 3 done · 0 verified"
        )

    # The mentee ticks a step: the mentor sees it ticked, and by whom.
    await ben.step("Read the guide").locator(".step-check").check()
    got = ana.step("Read the guide")
    await expect(got).to_have_attribute("data-done", "true")
    await expect(got.locator(".step-check")).to_be_checked()
    await expect(got).to_have_attribute("title", re.compile(r"^Ticked by Ben at .+"))
    await expect(ana.checklist.locator(".progress-text")).to_have_text("1 of 3 done · 0 verified")

    # Only the mentor has a verify control, and only on a ticked step.
    await expect(ben.step("Read the guide").locator(".step-verify")).to_be_hidden()
    await expect(ana.step("Set goals").locator(".step-verify")).to_be_hidden()
    await ana.page.get_by_role("button", name="Verify: Read the guide").click()
    verified = ben.step("Read the guide")
    await expect(verified).to_have_attribute("data-verified", "true")
    await expect(verified).to_have_class(re.compile(r"\bverified\b"))
    await expect(verified.locator(".step-badge")).to_have_text("✓ Verified")
    await expect(verified.locator(".step-badge")).to_be_visible()
    await expect(verified).to_have_attribute(
        "title", re.compile(r"Ticked by Ben at .+\nVerified by Ana \(mentor\) at .+")
    )
    await expect(ben.checklist.locator(".progress-text")).to_have_text("1 of 3 done · 1 verified")
    bar = ben.checklist.get_by_role("progressbar")
    await expect(bar).to_have_attribute("aria-valuenow", "1")
    await expect(bar).to_have_attribute("aria-valuemax", "3")
    await expect(ana.step("Read the guide").locator(".step-verify")).to_have_text("Unverify")

    # The mentee moves a step up twice with the keyboard; the focus stays on it.
    check = ben.step("Ship a project").locator(".step-check")
    await check.focus()
    await ben.page.keyboard.press("Alt+ArrowUp")
    await expect_titles(ben, ["Set goals", "Ship a project", "Read the guide"])
    await expect(check).to_be_focused()
    await ben.page.keyboard.press("Alt+ArrowUp")
    await expect(check).to_be_focused()
    order = ["Ship a project", "Set goals", "Read the guide"]
    await expect_titles(ben, order)
    await expect_titles(ana, order)
    await expect(ben.checklist.locator(".visually-hidden[aria-live]")).to_have_text(
        "Moved “Ship a project” to position 1 of 3."
    )
    # Alt+ArrowDown on the last step, Alt+ArrowUp on the first: nothing to do.
    await ben.step("Read the guide").locator(".step-check").press("Alt+ArrowDown")
    await ben.step("Ship a project").locator(".step-check").press("Alt+ArrowUp")

    # Rename inline: the mentor edits the title in place.
    await ana.page.get_by_role("button", name="Rename: Set goals").click()
    field = ana.checklist.get_by_label("Step title")
    await expect(field).to_be_focused()
    await expect(field).to_have_value("Set goals")
    await field.fill("Set SMART goals")
    await field.press("Enter")
    await expect(field).to_have_count(0)
    order = ["Ship a project", "Set SMART goals", "Read the guide"]
    await expect_titles(ana, order)
    await expect_titles(ben, order)
    # Escape leaves a title as it was (the mentee renames only the steps he added).
    await ben.step("Ship a project").locator(".step-check").press("F2")
    await ben.checklist.get_by_label("Step title").fill("Something else")
    await ben.checklist.get_by_label("Step title").press("Escape")
    await expect_titles(ben, order)

    # Drag and drop: the mentor drags the first step below the last.
    last = ana.step("Read the guide")
    box = await last.bounding_box()
    assert box is not None
    await (
        ana.step("Ship a project")
        .locator(".drag-handle")
        .drag_to(last, target_position={"x": 20, "y": box["height"] - 4})
    )
    order = ["Set SMART goals", "Read the guide", "Ship a project"]
    await expect_titles(ana, order)
    await expect_titles(ben, order)

    # Unticking a verified step is the mentor's (the mentee's box cannot be used); it clears
    # the verification.
    await expect(ben.step("Read the guide").locator(".step-check")).to_be_disabled()
    await ana.step("Read the guide").locator(".step-check").uncheck()
    for page in (ana, ben):
        await expect(page.step("Read the guide")).to_have_attribute("data-verified", "false")
        await expect(page.step("Read the guide").locator(".step-badge")).to_be_hidden()
        await expect(page.checklist.locator(".progress-text")).to_have_text(
            "0 of 3 done · 0 verified"
        )
    await ben.step("Read the guide").locator(".step-check").check()
    await ana.step("Set SMART goals").locator(".step-check").check()
    await ana.page.get_by_role("button", name="Verify: Set SMART goals").click()

    # Remove.
    await ben.page.get_by_role("button", name="Remove: Ship a project").click()
    order = ["Set SMART goals", "Read the guide"]
    await expect_titles(ana, order)
    await expect_titles(ben, order)
    for page in (ana, ben):
        await expect(page.checklist.locator(".progress-text")).to_have_text(
            "2 of 2 done · 1 verified"
        )

    # Both pages show the server's list, in its order.
    server = await server_checklist(web_server, web_room["id"])
    assert [i["title"] for i in server["items"]] == order
    assert server["progress"] == {"done": 2, "verified": 1, "total": 2}
    for page in (ana, ben):
        assert await page.step_ids() == [i["id"] for i in server["items"]]
        assert await page.step_titles() == order
        for item in server["items"]:
            row = page.page.locator(f'#checklist-panel li.step[data-item-id="{item["id"]}"]')
            await expect(row).to_have_attribute("data-done", str(item["done"]).lower())
            await expect(row).to_have_attribute("data-verified", str(item["verified"]).lower())
    # Every op went out with a fresh id, and nothing is left waiting.
    assert await ana.stored_outbox(0, "menteo.ops.v1:") == []
    assert await ben.stored_outbox(0, "menteo.ops.v1:") == []


async def test_tick_made_offline_survives_a_reload_and_refusals_are_shown(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ana = await open_room("ana")
    gate = SocketGate()
    ben = await open_room("ben", route=gate, device=PHONE)
    await ben.page.get_by_role("tab", name="Roadmap").tap()  # a phone shows one view at a time
    for title in ("Step one", "Step two", "Step three"):
        await ana.add_step(title)
    await expect_titles(ben, ["Step one", "Step two", "Step three"])

    # The room goes away for ben; he ticks two steps anyway: shown at once, kept.
    await gate.restart()
    await expect(ben.connection).not_to_have_attribute("data-state", "live")
    await ben.step("Step one").locator(".step-check").check()
    await ben.step("Step two").locator(".step-check").check()
    await expect(ben.pending_steps).to_have_count(2)
    await expect(ben.step("Step one")).to_have_attribute("data-done", "true")
    await expect(ben.checklist.locator(".checklist-note")).to_contain_text("2 changes not sent yet")
    kept = await ben.stored_outbox(2, "menteo.ops.v1:")
    assert [e["op"]["type"] for e in kept] == ["checklist.toggle", "checklist.toggle"]
    assert len({e["id"] for e in kept}) == 2
    assert await ben.outbox() == []  # the chat outbox is another one

    # Meanwhile the mentor removes one of them.
    await ana.page.get_by_role("button", name="Remove: Step two").click()
    await expect_titles(ana, ["Step one", "Step three"])

    # A reload keeps the operations (with their ids) until the room is back.
    await ben.page.reload()
    await expect(ben.connection).not_to_have_attribute("data-state", "live")
    assert await ben.outbox("menteo.ops.v1:") == kept
    gate.blocked = False
    await ben.wait_state("live")

    # The tick that could apply is everyone's; the other is refused, and ben is told why.
    await expect(ana.step("Step one")).to_have_attribute("data-done", "true")
    await expect(ana.step("Step one")).to_have_attribute("title", re.compile(r"^Ticked by Ben"))
    await expect(ben.checklist.get_by_role("alert")).to_contain_text("no longer exists")
    await expect_titles(ben, ["Step one", "Step three"])
    await expect(ben.step("Step one")).to_have_attribute("data-done", "true")
    assert await ben.stored_outbox(0, "menteo.ops.v1:") == []

    server = await server_checklist(web_server, web_room["id"])
    assert [(i["title"], i["done"], i["done_by"]) for i in server["items"]] == [
        ("Step one", True, "ben"),
        ("Step three", False, None),
    ]
    for page in (ana, ben):
        assert await page.step_ids() == [i["id"] for i in server["items"]]


async def test_page_works_without_the_notes_bundle(
    open_room: OpenRoom,
) -> None:
    """The notes editor is a separately built bundle: when it cannot be loaded, the notes
    panel says so and chat and the checklist work as ever."""

    async def setup(page: Any) -> None:
        await page.route("**/dist/notes.bundle.js", lambda route: route.fulfill(status=404))

    ana = await open_room("ana", setup=setup)
    ben = await open_room("ben", setup=setup)
    for page in (ana, ben):
        await expect(page.notes).to_contain_text("Notes unavailable")
        await expect(page.notes).to_have_attribute("data-status", "unavailable")
        assert page.notes_sockets == []
    await ana.say("still chatting")
    await expect(ben.message("still chatting")).to_have_count(1)
    await ben.add_step("Still planning")
    await expect_titles(ana, ["Still planning"])


async def test_resume_applies_only_events_after_the_welcome_snapshot(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ana = await open_room("ana")
    gate = SocketGate()
    ben = await open_room("ben", route=gate)
    await ana.add_step("One")
    await ana.add_step("Two")
    await expect_titles(ben, ["One", "Two"])

    # Ben drops (a server restart) and misses checklist events, which his resumed socket
    # replays after a welcome whose snapshot already holds them.
    await gate.restart()
    await expect(ben.connection).not_to_have_attribute("data-state", "live")
    await ana.add_step("Three")
    await ana.step("Two").locator(".step-check").check()
    await ana.page.get_by_role("button", name="Verify: Two").click()
    await ana.step("Three").locator(".step-check").press("Alt+ArrowUp")
    await ana.page.get_by_role("button", name="Rename: One").click()
    await ana.checklist.get_by_label("Step title").fill("First")
    await ana.checklist.get_by_label("Step title").press("Enter")
    await ana.page.get_by_role("button", name="Remove: First").click()
    await expect_titles(ana, ["Three", "Two"])
    gate.blocked = False
    await ben.wait_state("live")
    assert "since" in (gate.sockets[-1].url)
    await expect_titles(ben, ["Three", "Two"])
    await expect(ben.step("Two")).to_have_attribute("data-verified", "true")
    await expect(ben.checklist.locator(".progress-text")).to_have_text("1 of 2 done · 1 verified")
    server = await server_checklist(web_server, web_room["id"])
    assert await ben.step_ids() == [i["id"] for i in server["items"]]

    # And live events go on from there.
    await ben.step("Three").locator(".step-check").check()
    await expect(ana.step("Three")).to_have_attribute("data-done", "true")


async def test_order_and_event_rules_match_the_protocol(open_room: OpenRoom) -> None:
    """ChecklistState (web/js/checklist.js) run in the page on hand-made frames."""
    page = await open_room("ana")
    result = await page.page.evaluate(
        """async () => {
            const { ChecklistState, compareStrings } = await import("/js/checklist.js");
            const item = (id, pos, extra = {}) => ({
                id, title: id, description: "", pos, done: false, done_by: null,
                done_at: null, verified: false, verified_by: null, verified_at: null, ...extra,
            });
            const s = new ChecklistState();
            // Same pos: by id; plain string order (ASCII: digits < upper < lower).
            s.reset({ items: [item("b", "V"), item("a", "V"), item("c", "G"), item("d", "g")] }, 10);
            const order1 = s.ordered().map((i) => i.id);
            const author = { user_id: "ben", name: "Ben" };
            const ev = (seq, type, data) => ({ type, seq, id: `op${seq}`, author, ts: `t${seq}`, ...data });
            const skipped = s.apply(ev(9, "checklist.remove", { item_id: "a" })); // <= snapshot
            s.apply(ev(11, "checklist.toggle", { item_id: "a", done: true }));
            s.apply(ev(12, "checklist.verify", { item_id: "a", verified: true }));
            const ticked = { ...s.items.get("a") };
            s.apply(ev(13, "checklist.toggle", { item_id: "a", done: false }));
            const unticked = { ...s.items.get("a") };
            s.apply(ev(14, "checklist.add", { item: { id: "e", title: "E", description: "", pos: "0" }, after: null }));
            s.apply(ev(15, "checklist.move", { item_id: "c", after: "d", pos: "z" }));
            s.apply(ev(16, "checklist.rename", { item_id: "b", title: "Bee" }));
            s.apply(ev(17, "checklist.remove", { item_id: "d" }));
            s.apply(ev(17, "checklist.remove", { item_id: "b" })); // seen already
            return {
                order1, skipped, ticked, unticked,
                order2: s.ordered().map((i) => `${i.id}:${i.title}`),
                progress: s.progress(), seq: s.seq,
                cmp: [compareStrings("Z", "a"), compareStrings("a", "ab"), compareStrings("\\uffff", "😀")],
            };
        }"""
    )
    assert result["order1"] == ["c", "a", "b", "d"]
    assert result["skipped"] is False
    assert result["ticked"]["done_by"] == "ben" and result["ticked"]["done_at"] == "t11"
    assert result["ticked"]["verified"] is True and result["ticked"]["verified_by"] == "ben"
    assert result["unticked"]["done"] is False and result["unticked"]["done_by"] is None
    assert result["unticked"]["verified"] is False and result["unticked"]["verified_at"] is None
    assert result["order2"] == ["e:E", "a:a", "b:Bee", "c:c"]
    assert result["progress"] == {"done": 0, "verified": 0, "total": 4}
    assert result["seq"] == 17
    assert result["cmp"] == [-1, -1, -1]  # code points, like Python: U+FFFF < U+1F600
