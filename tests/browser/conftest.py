"""Fixtures for the browser tests: Debian's Chromium under Playwright, a real server on
SQLite serving web/, a room, and pages opened on it as its members."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.backends import make_backend
from tests.browser.roompage import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    TIMEOUT_MS,
    NewPage,
    OpenRoom,
    RoomPage,
    require_browser,
    require_notes_bundle,
)
from tests.client import create_room
from tests.servers import Running, make_settings, run_server

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_browser()
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="session")
def notes_bundle() -> None:
    """web/dist/notes.bundle.js, built once per session when missing or out of date (the
    notes tests need it; every other page test runs with or without it)."""
    require_browser()  # no build for tests that cannot run
    require_notes_bundle()


@pytest.fixture
async def web_server(tmp_path: Path) -> AsyncIterator[Running]:
    backend = await make_backend("sqlite", tmp_path)
    async with run_server(make_settings(backend)) as running:
        yield running


@pytest.fixture
async def web_room(web_server: Running) -> dict[str, Any]:
    return await create_room(
        web_server.url,
        web_server.service(),
        [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")],
        title="Ana & Ben",
    )


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[NewPage]:
    """``await new_page(device)``: a blank page in a browser context of its own (like a
    separate device: its own localStorage and network), closed when the test ends. An
    uncaught error in any of these pages fails the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def open_page(device: dict[str, Any] | None = None) -> Page:
        context = await browser.new_context(**(device or DESKTOP))
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
async def open_room(new_page: NewPage, web_server: Running, web_room: dict[str, Any]) -> OpenRoom:
    """``await open_room("ana")``: the room page, as that user, on a page of its own
    (``new_page``). ``route`` handles the page's room sockets (Playwright's
    route_web_socket), ``setup`` runs before the page loads, ``query`` replaces the URL's
    whole query string."""

    async def open_page(
        user_id: str,
        *,
        token: str | None = None,
        room_id: str | None = None,
        device: dict[str, Any] | None = None,
        route: Callable[[WebSocketRoute], Any] | None = None,
        setup: Callable[[Page], Awaitable[Any]] | None = None,
        query: str | None = None,
        wait_live: bool = True,
    ) -> RoomPage:
        page = RoomPage(await new_page(device))
        page.watch()
        if route is not None:
            await page.page.route_web_socket("**/rooms/*/ws*", route)
        if setup is not None:
            await setup(page.page)
        if query is None:
            token = token or web_server.token(user_id, user_id.title())
            query = f"room={room_id or web_room['id']}&token={token}"
        await page.page.goto(f"{web_server.url}/?{query}")
        if wait_live:
            await page.wait_state("live")
        return page

    return open_page
