"""The feed page (web/feed.html) in a real browser: a reader follows a community live. New
posts wait under a "N new posts" bar without moving what is read; reactions and comments
work inline and update live; older posts load as the end of the list comes into view; a
dropped socket resumes with nothing lost or doubled; member text is never HTML.

Debian's Chromium driven by Playwright. Every wait is on the page (a selector, an attribute,
a text) with a timeout: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from realtime import demo
from tests.backends import make_backend
from tests.browser.roompage import DESKTOP, PHONE, TIMEOUT_MS, NewPage
from tests.browser.screenshots import screenshot
from tests.browser.sockets import SocketGate, query
from tests.feed_client import FeedApi
from tests.servers import Running, make_settings, run_server
from tests.test_demo import FEED_BODIES, run_demo

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        Locator,
        Page,
        Route,
        WebSocketRoute,
    )

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__pwned=1"><b>bold</b> & <script>window.__pwned=2</script>'
HISTORY = 25  # posts made before the page opens: more than one page (20)


@dataclass
class FeedPage:
    page: Page
    sockets: list[str] = field(default_factory=list)  # URL of every feed socket, in order

    @property
    def posts(self) -> Locator:
        return self.page.locator("#feed-list > li.post")

    def post(self, body: str) -> Locator:
        exact = re.compile(f"^{re.escape(body)}$")
        return self.posts.filter(has=self.page.locator(".post-body", has_text=exact))

    @property
    def bar(self) -> Locator:
        return self.page.locator("#new-posts")

    def count(self, post: Locator, kind: str) -> Locator:
        return post.locator(f'.reaction[data-kind="{kind}"] .count')

    async def bodies(self) -> list[str]:
        result: list[str] = await self.posts.locator(".post-body").evaluate_all(
            "els => els.map(e => e.textContent)"
        )
        return result

    async def wait_state(self, state: str) -> None:
        await expect(self.page.locator("#connection")).to_have_attribute(
            "data-state", state, timeout=TIMEOUT_MS
        )


OpenFeed = Callable[..., Awaitable[FeedPage]]


@pytest.fixture
async def feed_server(tmp_path: Path) -> AsyncIterator[Running]:
    """SQLite, with the per-user post and comment rates off (the test posts a history)."""
    backend = await make_backend("sqlite", tmp_path)
    settings = make_settings(backend, feed_post_rate_per_second=0, feed_comment_rate_per_second=0)
    async with run_server(settings) as running:
        yield running


@dataclass
class World:
    community: str
    thread: str
    ben: FeedApi  # the thread's owner
    ana: FeedApi
    history: list[dict[str, Any]]  # oldest first


@pytest.fixture
async def world(feed_server: Running) -> World:
    service = FeedApi(feed_server.url, feed_server.token("backend", "Backend", role="service"))
    community = await service.community("Learning in public")
    ben = FeedApi(feed_server.url, feed_server.token("ben", "Ben"))
    ana = FeedApi(feed_server.url, feed_server.token("ana", "Ana"))
    thread = await ben.thread(community, "Into data engineering")
    history = [await ben.post(thread, f"Post {n:02}") for n in range(1, HISTORY + 1)]
    return World(community, thread, ben, ana, history)


@pytest.fixture
async def open_feed(new_page: NewPage, feed_server: Running, world: World) -> OpenFeed:
    """``await open_feed("cy")``: the community's feed page as that user, on a page of its
    own (``new_page``); ``route`` handles its feed sockets (route_web_socket)."""

    async def open_page(
        user_id: str,
        *,
        device: dict[str, Any] | None = None,
        route: Callable[[WebSocketRoute], Any] | None = None,
        query: str | None = None,
        wait_live: bool = True,
    ) -> FeedPage:
        page = FeedPage(await new_page(device))
        page.page.on("websocket", lambda ws: page.sockets.append(ws.url))
        if route is not None:
            await page.page.route_web_socket("**/feed/ws*", route)
        if query is None:
            token = feed_server.token(user_id, user_id.title())
            query = f"community={world.community}&token={token}"
        await page.page.goto(f"{feed_server.url}/feed.html?{query}")
        if wait_live:
            await page.wait_state("live")
        return page

    return open_page


async def test_new_posts_wait_under_a_bar_and_react_and_comment_inline(
    open_feed: OpenFeed, world: World
) -> None:
    cy = await open_feed("cy")
    await expect(cy.posts).to_have_count(20)
    await expect(cy.posts.first.locator(".post-body")).to_have_text(f"Post {HISTORY:02}")
    await expect(cy.page.locator("#feed-title")).to_have_text("Learning in public")
    await expect(cy.page).to_have_title("Learning in public · Menteo")

    # Cy reads further down; Ben posts twice meanwhile. Nothing on the screen moves.
    await cy.page.evaluate("window.scrollTo(0, 700)")
    reading = cy.posts.nth(6)
    top = await reading.evaluate("e => e.getBoundingClientRect().top")
    hostile = await world.ben.post(world.thread, HOSTILE)
    await expect(cy.bar).to_be_visible()
    await expect(cy.page.locator("#new-posts-text")).to_have_text("1 new post")
    await world.ben.post(world.thread, "Week 4: tests pass on CI")
    await expect(cy.page.locator("#new-posts-text")).to_have_text("2 new posts")
    await expect(cy.page).to_have_title("(2) Learning in public · Menteo")
    await expect(cy.posts).to_have_count(20)
    assert await reading.evaluate("e => e.getBoundingClientRect().top") == top
    assert await cy.page.evaluate("window.scrollY") == 700
    await screenshot(cy.page)

    # The bar, by keyboard: the new posts show on top, newest first, and take the focus.
    await cy.bar.press("Enter")
    await expect(cy.bar).to_be_hidden()
    await expect(cy.posts).to_have_count(22)
    await expect(cy.posts.first).to_be_focused()
    assert (await cy.bodies())[:3] == ["Week 4: tests pass on CI", HOSTILE, f"Post {HISTORY:02}"]
    assert await cy.page.evaluate("window.scrollY") == 0
    await expect(cy.page).to_have_title("Learning in public · Menteo")

    # HTML in a post is text: no element is made of it, no script runs.
    post = cy.post(HOSTILE)
    await expect(post).to_have_attribute("data-post-id", hostile["id"])
    assert await post.locator(".post-body").text_content() == HOSTILE
    await expect(post.locator(".post-body *")).to_have_count(0)
    assert await cy.page.evaluate("window.__pwned") is None

    # Reactions: Cy's own shows pressed; counts are the server's, live, for everyone's.
    like = post.locator('.reaction[data-kind="like"]')
    await like.click()
    await expect(like).to_have_attribute("aria-pressed", "true")
    await expect(cy.count(post, "like")).to_have_text("1")
    await world.ana.react(hostile["id"], "celebrate")
    await expect(cy.count(post, "celebrate")).to_have_text("1")
    await expect(like).to_have_attribute("aria-label", "Like: 1")
    await like.press("Space")  # and by keyboard, off again
    await expect(like).to_have_attribute("aria-pressed", "false")
    await expect(cy.count(post, "like")).to_have_text("0")

    # Comments: open them, write one (Enter sends), and see another arrive live.
    toggle = post.locator(".comments-toggle")
    await expect(toggle).to_have_text("0 comments")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    field = post.get_by_label("Write a comment")
    await expect(field).to_be_focused()
    await field.fill("Careful: <b>escape</b> your HTML")
    await field.press("Enter")
    comments = post.locator(".comment")
    await expect(comments).to_have_count(1)
    await expect(field).to_have_value("")
    await expect(comments.first.locator(".author")).to_have_text("Cy")
    await expect(comments.first.locator(".you")).to_have_text("(you)")
    await world.ana.comment(hostile["id"], "Nice one, Ben")
    await expect(comments).to_have_count(2)
    await expect(toggle).to_have_text("2 comments")
    bodies = await comments.locator(".comment-body").evaluate_all(
        "els => els.map(e => e.textContent)"
    )
    assert bodies == ["Careful: <b>escape</b> your HTML", "Nice one, Ben"]
    await expect(post.locator(".comment-body *")).to_have_count(0)

    # A comment on a post whose comments are closed: its count goes up, once.
    older = cy.post(f"Post {HISTORY:02}")
    await world.ana.comment(world.history[-1]["id"], "Parquet, nice")
    await expect(older.locator(".comments-toggle")).to_have_text("1 comment")

    # A deleted post leaves the page.
    await world.ben.delete(hostile["id"])
    await expect(cy.post(HOSTILE)).to_have_count(0)
    await expect(cy.posts).to_have_count(21)
    await screenshot(cy.page)


async def test_older_posts_load_as_the_end_comes_into_view_on_a_phone(
    open_feed: OpenFeed,
) -> None:
    cy = await open_feed("cy", device=PHONE)
    await expect(cy.posts).to_have_count(20)
    await expect(cy.page.locator("#feed-end")).to_be_hidden()
    # Scrolling to the end loads the next page (IntersectionObserver), no click needed.
    await cy.page.locator("#feed-more").scroll_into_view_if_needed()
    await expect(cy.posts).to_have_count(HISTORY)
    await expect(cy.page.locator("#feed-end")).to_be_visible()
    await expect(cy.page.locator("#load-older")).to_be_hidden()
    # Every post once, newest first.
    assert await cy.bodies() == [f"Post {n:02}" for n in range(HISTORY, 0, -1)]
    cursors = await cy.posts.evaluate_all("els => els.map(e => Number(e.dataset.cursor))")
    assert cursors == sorted(cursors, reverse=True)
    assert len(set(cursors)) == HISTORY
    # Readable on a phone: nothing wider than the screen.
    width = await cy.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"]  # type: ignore[index]
    await cy.page.evaluate("window.scrollTo(0, 0)")
    await screenshot(cy.page)


async def test_a_dropped_socket_resumes_after_the_last_event_seen(
    open_feed: OpenFeed, world: World
) -> None:
    gate = SocketGate()
    cy = await open_feed("cy", route=gate)
    newest = cy.post(f"Post {HISTORY:02}")
    seen = await world.ana.comment(world.history[-1]["id"], "before the drop")
    await expect(newest.locator(".comments-toggle")).to_have_text("1 comment")
    first_url = cy.sockets[0]
    assert query(first_url)["since"] == str(world.history[-1]["cursor"])

    # The server goes away; while it is, a comment and a post are made.
    await gate.restart()
    await expect(cy.page.locator("#connection")).not_to_have_attribute("data-state", "live")
    await world.ana.comment(world.history[-1]["id"], "while away")
    await world.ben.post(world.thread, "Posted while Cy was away")
    gate.blocked = False
    await cy.wait_state("live")

    # Resumed after the last event seen: each missed event once.
    assert query(gate.sockets[-1].url)["since"] == str(seen["cursor"])
    await expect(cy.page.locator("#new-posts-text")).to_have_text("1 new post")
    await expect(newest.locator(".comments-toggle")).to_have_text("2 comments")
    await cy.bar.click()
    await expect(cy.post("Posted while Cy was away")).to_have_count(1)
    await newest.locator(".comments-toggle").click()
    await expect(newest.locator(".comment-body")).to_have_text(["before the drop", "while away"])


async def test_offline_shows_and_catches_up_when_back_online(
    open_feed: OpenFeed, world: World
) -> None:
    cy = await open_feed("cy", device=PHONE)
    await cy.page.context.set_offline(True)
    await cy.wait_state("offline")
    await expect(cy.page.locator("#connection-text")).to_contain_text("Offline")
    await expect(cy.page.locator("#retry")).to_be_visible()
    await world.ben.post(world.thread, "Made while Cy was offline")
    await world.ana.react(world.history[-1]["id"], "insightful")
    await cy.page.context.set_offline(False)
    await cy.wait_state("live")
    await expect(cy.page.locator("#new-posts-text")).to_have_text("1 new post")
    newest = cy.post(f"Post {HISTORY:02}")
    await expect(cy.count(newest, "insightful")).to_have_text("1")
    assert len(cy.sockets) == 2
    assert query(cy.sockets[1])["since"] == str(world.history[-1]["cursor"])


async def test_a_socket_that_cannot_resume_reads_the_feed_again(
    open_feed: OpenFeed, world: World
) -> None:
    """A reconnect the server cannot resume (another database epoch, say) is welcomed with
    ``recovered: false``: the page reads its first page again instead of trusting what it
    holds, and shows each post once."""
    sockets: list[WebSocketRoute] = []
    posted = asyncio.Event()

    async def route(ws: WebSocketRoute) -> None:
        if sockets and not posted.is_set():
            # Held off until the missed post exists: a reconnect before it would read a first
            # page without it, and the post would then arrive live, as "1 new post".
            await ws.close(code=1012, reason="server restart")
            return
        server = ws.connect_to_server()
        sockets.append(ws)
        if len(sockets) == 1:
            return

        def unrecovered(message: str | bytes) -> None:
            frame = orjson.loads(message)
            if frame.get("type") == "welcome":
                message = orjson.dumps(frame | {"recovered": False}).decode()
            ws.send(message)

        server.on_message(unrecovered)

    cy = await open_feed("cy", route=route)
    await sockets[0].close(code=1012, reason="server restart")
    await expect(cy.page.locator("#connection")).not_to_have_attribute("data-state", "live")
    await world.ben.post(world.thread, "While the socket was down")
    posted.set()
    await cy.wait_state("live")
    # Read again: the missed post is in the list itself (it predates the page), once.
    await expect(cy.posts.first.locator(".post-body")).to_have_text("While the socket was down")
    await expect(cy.posts).to_have_count(20)
    await expect(cy.bar).to_be_hidden()
    assert len(sockets) == 2
    # Live again afterwards.
    await world.ben.post(world.thread, "After the reload")
    await expect(cy.page.locator("#new-posts-text")).to_have_text("1 new post")


async def test_the_following_feed(open_feed: OpenFeed, world: World, feed_server: Running) -> None:
    """``following=1``: what the reader follows, live, like a community's feed."""
    dee = FeedApi(feed_server.url, feed_server.token("dee", "Dee"))
    await dee.follow("threads", world.thread)
    token = feed_server.token("dee", "Dee")
    page = await open_feed("dee", query=f"following=1&token={token}")
    await expect(page.page.locator("#feed-title")).to_have_text("Following")
    await expect(page.page.locator('#feeds a[aria-current="page"]')).to_have_text("Following")
    await expect(page.posts).to_have_count(20)
    await world.ben.post(world.thread, "For my followers")
    await expect(page.page.locator("#new-posts-text")).to_have_text("1 new post")
    await page.bar.click()
    await expect(page.posts.first.locator(".post-body")).to_have_text("For my followers")


async def test_a_comment_sent_again_after_a_lost_answer_is_stored_once(
    open_feed: OpenFeed, world: World
) -> None:
    cy = await open_feed("cy")
    lost = True

    async def lose_the_answer(route: Route) -> None:
        nonlocal lost
        if route.request.method == "POST" and lost:
            lost = False
            await route.fetch()  # the server stores it ...
            await route.abort()  # ... and the answer never arrives
        else:
            await route.continue_()

    await cy.page.route("**/api/posts/*/comments", lose_the_answer)
    post = cy.posts.first
    await post.locator(".comments-toggle").click()
    field = post.get_by_label("Write a comment")
    await field.fill("Only once, please")
    await field.press("Enter")
    await expect(post.locator(".comment-form .error")).to_contain_text("No connection")
    await expect(field).to_have_value("Only once, please")  # the draft is kept
    await field.press("Enter")  # sent again: the same Idempotency-Key
    await expect(field).to_have_value("")
    await expect(post.locator(".comment-body")).to_have_text(["Only once, please"])
    await expect(post.locator(".comments-toggle")).to_have_text("1 comment")
    stored = await world.ben.ok("GET", f"/api/posts/{world.history[-1]['id']}")
    assert [c["body"] for c in stored["comments"]] == ["Only once, please"]


async def test_an_empty_feed_shows_its_first_post_at_once(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    service = FeedApi(feed_server.url, feed_server.token("backend", "Backend", role="service"))
    quiet = await service.community("Quiet corner")
    token = feed_server.token("cy", "Cy")
    cy = await open_feed("cy", query=f"community={quiet}&token={token}")
    await expect(cy.page.locator("#feed-empty")).to_have_text("No posts in this feed yet.")
    await expect(cy.page.locator("#load-older")).to_be_hidden()
    thread = await world.ben.thread(quiet, "Hello")
    await world.ben.post(thread, "First!")
    await expect(cy.posts).to_have_count(1)  # nothing to move: no bar
    await expect(cy.bar).to_be_hidden()
    await expect(cy.page.locator("#feed-empty")).to_be_hidden()


async def test_a_refused_link_says_why(open_feed: OpenFeed, world: World) -> None:
    cy = await open_feed("cy", query=f"community={world.community}&token=nope", wait_live=False)
    await expect(cy.page.locator("#fatal")).to_contain_text("invalid or has expired")
    await cy.wait_state("stopped")
    assert cy.sockets == []


async def test_without_a_token_the_page_asks_for_one(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    cy = await open_feed("cy", query=f"community={world.community}", wait_live=False)
    await expect(cy.page.get_by_label("Community ID", exact=False)).to_have_value(world.community)
    token = cy.page.get_by_label("Access token")
    await expect(token).to_be_focused()
    await token.fill(feed_server.token("cy", "Cy"))
    await token.press("Enter")
    await cy.wait_state("live")
    await expect(cy.posts).to_have_count(20)
    # The token is offered as a subprotocol, never put in the socket's URL.
    assert cy.sockets and "token" not in cy.sockets[0]


@pytest.mark.usefixtures("notes_bundle")  # the room picture shows the notes editor
async def test_the_demo_links_open_the_feed_and_the_room(browser: Browser, tmp_path: Path) -> None:
    """``serve --demo``: its feed link shows the seeded thread live; its room link opens."""
    # The demo spends Ben's burst of posts; this test has him post once more.
    async with run_demo(tmp_path / "demo.db", MENTEO_FEED_POST_BURST="10") as run:
        context = await browser.new_context(**DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = await context.new_page()
            await page.goto(run.links["Ana, community feed"])
            feed = FeedPage(page)
            await feed.wait_state("live")
            assert await feed.bodies() == FEED_BODIES
            milestone = feed.post(demo.MILESTONE).locator(".milestone")
            await expect(milestone).to_contain_text(demo.ROADMAP_STEPS[0]["title"])
            await expect(milestone).to_contain_text("verified by Ana")
            latest = feed.posts.first
            await expect(latest.locator(".comments-toggle")).to_have_text("1 comment")
            await latest.locator(".comments-toggle").click()
            await expect(latest.locator(".comment-body")).to_have_text([demo.ANA_COMMENT])
            await expect(feed.count(latest, "celebrate")).to_have_text("1")
            await expect(latest.locator('.reaction[data-kind="celebrate"]')).to_have_attribute(
                "aria-pressed", "true"
            )  # Ana's own
            await latest.locator(".comment-form textarea").blur()

            # Ben posts (with a token his link gets from the demo's endpoint): it waits.
            ben = (await run.query("Ben, community feed"))["token"]
            api = FeedApi(run.base_url, ben)
            thread = (await api.feed(f"community={query(page.url)['community']}"))["posts"][0]
            await api.post(thread["thread_id"], "Week 4: the pipeline is idempotent now.")
            await expect(page.locator("#new-posts-text")).to_have_text("1 new post")
            await screenshot(page)
            await feed.bar.click()
            await expect(feed.posts.first.locator(".post-body")).to_have_text(
                "Week 4: the pipeline is idempotent now."
            )

            # The feed page links to the reader's rooms; that link opens the room.
            await page.get_by_role("link", name=demo.ROOM_TITLE).click()
            await expect(page.locator("#room-title")).to_have_text(demo.ROOM_TITLE)
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            # The README's picture of the room: the demo's chat, roadmap and notes.
            await expect(page.locator("#notes-panel .cm-content")).to_contain_text("Session 1")
            await expect(page.locator("#checklist-panel li.step")).to_have_count(
                len(demo.ROADMAP_STEPS)
            )
            await screenshot(page, "room.png")

            # And back: the room page's feed link opens the room's community.
            await page.get_by_role("link", name="Community feed").click()
            await feed.wait_state("live")
            await expect(page.locator("#feed-title")).to_have_text(demo.COMMUNITY)
            await expect(feed.posts).to_have_count(len(FEED_BODIES) + 1)

            # The README's picture of the feed: Ben writing in his own thread.
            writer = FeedPage(await context.new_page())
            await writer.page.goto(run.links["Ben, community feed"])
            await writer.wait_state("live")
            await writer.page.get_by_label("Your post").fill(
                "Week 5: backfilled a year of orders in 4 minutes."
            )
            await expect(writer.page.locator("#post-thread option:checked")).to_have_text(
                thread["thread_title"]
            )
            await screenshot(writer.page, "feed.png")
        finally:
            await context.close()
