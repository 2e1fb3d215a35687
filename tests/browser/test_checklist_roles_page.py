"""The role table on the page (web/js/checklist.js ``mayDo``): a control the reader's role
may not use is not offered. The mentor curates the roadmap and the mentee works it.

Debian's Chromium driven by Playwright; every wait is on the page, with a timeout.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest

from tests.browser.roompage import OpenRoom
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

pytestmark = pytest.mark.browser


async def test_a_mentee_is_not_offered_the_mentors_controls(
    open_room: OpenRoom, web_server: Running, web_room: dict[str, Any]
) -> None:
    ana = await open_room("ana")  # the mentor
    ben = await open_room("ben")  # the mentee
    await ana.add_step("Mentor's step")
    # Stored before Ben adds his (else the two adds race, and either may come first).
    await expect(ben.steps.locator(".step-title")).to_have_text(["Mentor's step"])
    await ben.add_step("Ben's step")
    for page in (ana, ben):
        await expect(page.steps.locator(".step-title")).to_have_text(
            ["Mentor's step", "Ben's step"]
        )
        await expect(page.pending_steps).to_have_count(0)

    # The mentor's step: the mentor may remove, rename and move it; the mentee may only tick.
    mentors_on_ana, mentors_on_ben = ana.step("Mentor's step"), ben.step("Mentor's step")
    for control in (".step-remove", ".step-rename", ".step-up", ".step-down", ".drag-handle"):
        await expect(mentors_on_ana.locator(control)).to_be_visible()
        await expect(mentors_on_ben.locator(control)).to_be_hidden()
    await expect(ana.page.get_by_role("button", name="Remove: Mentor's step")).to_have_count(1)
    await expect(ben.page.get_by_role("button", name="Remove: Mentor's step")).to_have_count(0)
    await expect(mentors_on_ben).to_have_attribute("draggable", "false")
    await expect(mentors_on_ben.locator(".step-check")).to_be_enabled()
    # F2 (rename) on it does nothing on the mentee's page.
    await mentors_on_ben.locator(".step-check").press("F2")
    await expect(ben.checklist.get_by_label("Step title")).to_have_count(0)

    # His own step: the mentee may remove, rename and move it.
    own = ben.step("Ben's step")
    for control in (".step-remove", ".step-rename", ".step-up"):
        await expect(own.locator(control)).to_be_visible()
    await expect(ben.checklist.locator(".checklist-role")).to_contain_text("As the mentee")
    await expect(ana.checklist.locator(".checklist-role")).to_contain_text("As the mentor")

    # Once the mentor verifies his step, it is the mentor's to change: no remove, no untick.
    await own.locator(".step-check").check()
    await ana.page.get_by_role("button", name="Verify: Ben's step").click()
    await expect(own).to_have_attribute("data-verified", "true")
    await expect(own.locator(".step-remove")).to_be_hidden()
    await expect(own.locator(".step-rename")).to_be_hidden()
    await expect(own.locator(".step-check")).to_be_disabled()
    await expect(ana.step("Ben's step").locator(".step-remove")).to_be_visible()

    # The page offers what the server allows: the server's list is what both pages show.
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{web_server.url}/api/rooms/{web_room['id']}/checklist",
            headers=web_server.service(),
        )
    items = resp.json()["items"]
    assert [(i["title"], i["added_by"]) for i in items] == [
        ("Mentor's step", "ana"),
        ("Ben's step", "ben"),
    ]
