"""The room page (web/index.html) as the browser tests drive it, and the browser's setup."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from menteo_testkit.waits import wait_until
from tests.ci import one_worker_at_a_time, skip_or_fail

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
    """Skip when Chromium or Playwright is missing; on CI (any truthy CI) fail instead."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright)")
    if not missing:
        return
    skip_or_fail("browser tests need " + " and ".join(missing))


ROOT = Path(__file__).resolve().parents[2]
NOTES_BUNDLE = ROOT / "web" / "dist" / "notes.bundle.js"
NOTES_SOURCES = [
    ROOT / "package.json",
    ROOT / "package-lock.json",
    ROOT / "web" / "vendor-src",
    ROOT / "clients" / "js" / "src",  # the SDK's notes wiring is bundled too
]


def _skip_or_fail(message: str) -> NoReturn:
    skip_or_fail(message)


def _newest_source() -> float:
    times = []
    for source in NOTES_SOURCES:
        files = source.rglob("*") if source.is_dir() else [source]
        times += [f.stat().st_mtime for f in files if f.is_file()]
    return max(times, default=0.0)


def require_notes_bundle() -> None:
    """Build web/dist/notes.bundle.js (``npm ci`` when node_modules is missing or older than
    the lock file, then ``npm run build``) unless it is newer than its sources. Without node
    and npm: skip, or fail on CI (any truthy CI)."""
    with one_worker_at_a_time(ROOT):
        _build_notes_bundle()


def _build_notes_bundle() -> None:
    if NOTES_BUNDLE.exists() and NOTES_BUNDLE.stat().st_mtime >= _newest_source():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _skip_or_fail(
            "the notes tests need web/dist/notes.bundle.js, built with Node.js and npm "
            "(npm ci && npm run build); node or npm is not installed"
        )
    lock = ROOT / "package-lock.json"
    installed = ROOT / "node_modules" / ".package-lock.json"
    steps = [[npm, "run", "build"]]
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        steps.insert(0, [npm, "ci", "--no-audit", "--no-fund"])
    for command in steps:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-2000:]
            _skip_or_fail(f"building the notes bundle failed: {' '.join(command[1:])}\n{output}")


@dataclass
class RoomPage:
    """One room page; ``OpenRoom`` (the ``open_room`` fixture) opens them."""

    page: Page
    sockets: list[str] = field(default_factory=list)  # URL of every room socket, in order
    notes_sockets: list[str] = field(default_factory=list)  # the same for the notes socket
    inbox_sockets: list[str] = field(default_factory=list)  # ... and the room list's (inbox)

    def watch(self) -> None:
        self.page.on("websocket", self._socket_opened)

    def _socket_opened(self, ws: Any) -> None:
        path = urlsplit(ws.url).path
        if path.endswith("/notes"):
            self.notes_sockets.append(ws.url)
        elif path.endswith("/inbox/ws"):
            self.inbox_sockets.append(ws.url)
        else:
            self.sockets.append(ws.url)

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

    async def outbox(self, prefix: str = "menteo.outbox.v1:") -> list[dict[str, Any]]:
        """Every entry of every outbox in this page's localStorage (chat messages; with
        ``prefix="menteo.ops.v1:"`` the checklist operations)."""
        result: list[dict[str, Any]] = await self.page.evaluate(
            """prefix => Object.keys(localStorage)
                 .filter(k => k.startsWith(prefix))
                 .flatMap(k => JSON.parse(localStorage.getItem(k)))""",
            prefix,
        )
        return result

    async def stored_outbox(
        self, count: int, prefix: str = "menteo.outbox.v1:"
    ) -> list[dict[str, Any]]:
        """The outbox once localStorage holds ``count`` entries: the page shows a change at
        once and stores it after (under a Web Lock), so a look made as soon as the page
        shows it may come before the write."""
        seen: list[dict[str, Any]] = []

        async def stored() -> bool:
            seen[:] = await self.outbox(prefix)
            return len(seen) == count

        await wait_until(stored, f"{count} entries in the {prefix} outbox", state=lambda: seen)
        return seen

    # The roadmap checklist (web/js/checklistpanel.js) -----------------------------------
    @property
    def checklist(self) -> Locator:
        return self.page.locator("#checklist-panel")

    @property
    def steps(self) -> Locator:
        """The steps as shown, in order (pending ones of mine included)."""
        return self.page.locator("#checklist-panel li.step")

    @property
    def pending_steps(self) -> Locator:
        return self.page.locator("#checklist-panel li.step[data-pending]")

    def step(self, title: str) -> Locator:
        """The step whose title is exactly ``title``."""
        exact = re.compile(f"^{re.escape(title)}$")
        return self.steps.filter(has=self.page.locator(".step-title", has_text=exact))

    async def add_step(self, title: str) -> None:
        await self.page.get_by_label("New step").fill(title)
        await self.page.get_by_label("New step").press("Enter")

    async def step_titles(self) -> list[str]:
        result: list[str] = await self.steps.locator(".step-title").evaluate_all(
            "els => els.map(e => e.textContent)"
        )
        return result

    async def step_ids(self) -> list[str]:
        result: list[str] = await self.steps.evaluate_all("els => els.map(e => e.dataset.itemId)")
        return result

    # The shared notes (web/js/notes.js) -------------------------------------------------
    @property
    def notes(self) -> Locator:
        return self.page.locator("#notes-panel")

    @property
    def notes_editor(self) -> Locator:
        return self.page.locator("#notes-panel .cm-content")

    async def wait_notes_text(self, text: str) -> None:
        """Wait until this page's notes document (the Y.Text) holds exactly ``text``."""
        await self.page.wait_for_function(
            """async text => {
                const notes = await import("/js/notes.js");  // the module the page runs
                return notes.notesText() === text;
            }""",
            arg=text,
            timeout=TIMEOUT_MS,
        )

    async def notes_text(self) -> str | None:
        result: str | None = await self.page.evaluate(
            'async () => (await import("/js/notes.js")).notesText()'
        )
        return result


# The open_room fixture (conftest.py): ``await open_room("ana", **options) -> RoomPage``.
OpenRoom = Callable[..., Awaitable[RoomPage]]
# The new_page fixture (conftest.py): ``await new_page(device=None) -> Page``.
NewPage = Callable[..., Awaitable["Page"]]
