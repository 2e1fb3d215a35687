"""The room page (web/index.html) as the browser tests drive it, and the browser's setup."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

CHROMIUM = "/usr/lib/chromium/chromium"  # Debian's package; never `playwright install`
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000  # every wait on the page; nothing sleeps
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


def require_browser() -> None:
    """Skip when Chromium or Playwright is missing; on CI (CI=true) fail instead."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright)")
    if not missing:
        return
    message = "browser tests need " + " and ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; on CI they must run")
    pytest.skip(message)


@dataclass
class RoomPage:
    """One room page; ``OpenRoom`` (the ``open_room`` fixture) opens them."""

    page: Page
    sockets: list[str] = field(default_factory=list)  # URL of every socket opened, in order
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page

    def watch(self) -> None:
        self.page.on("websocket", lambda ws: self.sockets.append(ws.url))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    # Parts of the page ----------------------------------------------------------------
    @property
    def connection(self) -> Locator:
        return self.page.locator("#connection")

    @property
    def composer(self) -> Locator:
        return self.page.get_by_label("Message", exact=True)

    @property
    def messages(self) -> Locator:
        """Messages the server has stored (pending ones are not among them)."""
        return self.page.locator("#messages .message:not(.pending)")

    @property
    def pending(self) -> Locator:
        return self.page.locator("#messages .message.pending")

    def message(self, body: str) -> Locator:
        return self.messages.filter(has=self.page.locator(".body", has_text=body))

    def here(self, user_id: str) -> Locator:
        return self.page.locator(f'#presence li[data-user-id="{user_id}"]')

    def member(self, user_id: str) -> Locator:
        return self.page.locator(f'#members li[data-user-id="{user_id}"]')

    # Actions and reads --------------------------------------------------------------
    async def wait_state(self, state: str) -> None:
        from playwright.async_api import expect

        await expect(self.connection).to_have_attribute("data-state", state, timeout=TIMEOUT_MS)

    async def say(self, text: str) -> None:
        """Type a message and send it with Enter."""
        await self.composer.fill(text)
        await self.composer.press("Enter")

    async def seqs(self) -> list[int]:
        values = await self.messages.evaluate_all("els => els.map(e => e.dataset.seq)")
        return [int(v) for v in values]

    async def bodies(self) -> list[str]:
        result: list[str] = await self.messages.locator(".body").evaluate_all(
            "els => els.map(e => e.textContent)"
        )
        return result

    async def outbox(self) -> list[dict[str, Any]]:
        """Every entry of every outbox in this page's localStorage."""
        result: list[dict[str, Any]] = await self.page.evaluate(
            """() => Object.keys(localStorage)
                 .filter(k => k.startsWith("menteo.outbox.v1:"))
                 .flatMap(k => JSON.parse(localStorage.getItem(k)))"""
        )
        return result


# The open_room fixture (conftest.py): ``await open_room("ana", **options) -> RoomPage``.
OpenRoom = Callable[..., Awaitable[RoomPage]]
