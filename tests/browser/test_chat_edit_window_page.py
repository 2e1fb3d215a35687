"""An edit the server refuses (past MENTEO_EDIT_WINDOW: ``error forbidden``) is said on the
message, its text stays, and "Edit" is no longer offered on it (web/js/messageactions.js).
The page cannot know the window in advance; the server's answer is the rule."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends import make_backend
from tests.browser.roompage import OpenRoom
from tests.browser.test_chat_actions_page import action
from tests.servers import Running, make_settings, run_server

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture
async def web_server(tmp_path: Path) -> AsyncIterator[Running]:
    """A server whose edit window is a millisecond: every edit from a page comes too late."""
    backend = await make_backend("sqlite", tmp_path)
    async with run_server(make_settings(backend, edit_window=0.001)) as running:
        yield running


async def test_an_edit_refused_for_age_says_so_and_edit_is_no_longer_offered(
    open_room: OpenRoom,
) -> None:
    ana = await open_room("ana")
    await ana.say("too late to change")
    await action(ana, "too late to change", "Edit").click()
    editor = ana.page.get_by_role("textbox", name="Edit message")
    await editor.fill("changed")
    await editor.press("Enter")
    status = ana.message("too late to change").locator(".action-status")
    await expect(status).to_contain_text("Not saved:")
    await expect(status).to_have_class("action-status failed")
    await expect(action(ana, "too late to change", "Edit")).to_have_count(0)
    await expect(action(ana, "too late to change", "Delete")).to_have_count(1)
    assert await ana.outbox("menteo.ops.v1:") == []
