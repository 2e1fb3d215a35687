# ruff: noqa: F811 (the feed page fixtures are imported from test_feed_page and used by name)
"""Writing in public from the feed page (web/feed.html): a post in one's own thread, a new
thread, follows of a community, a thread and a person, deleting one's own post and comment
(asked first), limits shown before sending and nothing cut, the Following tab when nothing is
followed, the room's feed link, the new-posts bar clear of the first post, a favicon, axe-core
and keyboard-only use.

Debian's Chromium driven by Playwright against a real server; two browser contexts where two
people are involved. Every wait is on the page or on the server: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Any

import pytest

from menteo_testkit.waits import wait_until
from tests.browser.axe import blocking
from tests.browser.roompage import PHONE
from tests.browser.screenshots import screenshot
from tests.browser.test_feed_page import (  # noqa: F401 (fixtures)
    HISTORY,
    FeedPage,
    OpenFeed,
    World,
    feed_server,
    open_feed,
    world,
)
from tests.client import create_room
from tests.feed_client import FeedApi
from tests.servers import Running

with contextlib.suppress(ImportError):  # without it, the browser fixture skips or fails
    from playwright.async_api import expect

if TYPE_CHECKING:
    from playwright.async_api import FloatRect, Locator, Page, Request

pytestmark = pytest.mark.browser


def following(server: Running, user: str) -> str:
    return f"following=1&token={server.token(user, user.title())}"


async def follows_of(server: Running, user: str) -> dict[str, Any]:
    result: dict[str, Any] = await FeedApi(server.url, server.token(user)).ok("GET", "/api/follows")
    return result


def writes(page: Page) -> list[str]:
    """Every REST write the page makes from now on (method and path)."""
    seen: list[str] = []

    def record(request: Request) -> None:
        if request.method != "GET" and "/api/" in request.url:
            seen.append(f"{request.method} {request.url.split('/api/', 1)[1]}")

    page.on("request", record)
    return seen


async def settled(button: Locator, pressed: bool) -> None:
    """The follow button shows ``pressed`` and the server has answered."""
    await expect(button).to_have_attribute("aria-pressed", "true" if pressed else "false")
    await expect(button).not_to_have_attribute("aria-busy", "true")


async def tab_to(page: Page, target: Locator, limit: int = 120, key: str = "Tab") -> None:
    """Press Tab (or Shift+Tab) until ``target`` has the keyboard focus."""
    for _ in range(limit):
        if await target.evaluate("e => e === document.activeElement"):
            return
        await page.keyboard.press(key)
    raise AssertionError(f"Tab never reached {target}")


async def test_a_post_in_my_thread_reaches_a_follower_live(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    # Cy follows Ben from beside his name, then reads the Following tab.
    cy = await open_feed("cy")
    follow_ben = cy.posts.first.locator('[data-follow="users:ben"]')
    await expect(follow_ben).to_have_attribute("aria-pressed", "false")
    await expect(follow_ben).to_have_accessible_name("Follow Ben")
    await follow_ben.click()
    await settled(follow_ben, True)
    await expect(follow_ben).to_have_text(re.compile("^Following"))
    # Every button for Ben shows it (one per post of his).
    await expect(cy.page.locator('[data-follow="users:ben"][aria-pressed="true"]')).to_have_count(
        20
    )
    assert (await follows_of(feed_server, "cy"))["users"] == ["ben"]
    await cy.page.locator("#feeds a", has_text="Following").click()
    await cy.wait_state("live")
    await expect(cy.posts).to_have_count(20)

    # Ben writes in his thread: shown to him at once, to Cy live under the bar.
    ben = await open_feed("ben")
    composer = ben.page.locator("#composer")
    await expect(composer).to_be_visible()
    await expect(ben.page.get_by_label("In your thread")).to_have_value(world.thread)
    await expect(ben.page.locator("#post-thread option")).to_have_text(["Into data engineering"])
    body = ben.page.get_by_label("Your post")
    await body.fill("Week 5: my first DAG\n\nIt ran on the second try.")
    await expect(ben.page.locator("#post-counter")).to_be_hidden()  # far from the limit
    await ben.page.get_by_role("button", name="Post", exact=True).click()
    await expect(body).to_have_value("")
    mine = ben.posts.first
    await expect(mine.locator(".post-body")).to_have_text(
        "Week 5: my first DAG\n\nIt ran on the second try."
    )
    await expect(mine.locator(".you")).to_have_text("(you)")
    await expect(ben.bar).to_be_hidden()  # his own post waits under no bar
    await expect(mine.locator("[data-follow]")).to_have_count(0)  # no following oneself
    await expect(cy.page.locator("#new-posts-text")).to_have_text("1 new post")
    await cy.bar.click()
    await expect(cy.posts.first.locator(".post-body")).to_have_text(re.compile("^Week 5"))
    await screenshot(ben.page)

    # Cy unfollows Ben: the Following tab's socket drops him at once, on the server too.
    await cy.posts.first.locator('[data-follow="users:ben"]').click()
    await settled(cy.posts.first.locator('[data-follow="users:ben"]'), False)
    assert (await follows_of(feed_server, "cy"))["users"] == []


async def test_start_a_thread_and_post_in_it(open_feed: OpenFeed, world: World) -> None:
    cy = await open_feed("cy")
    # Cy owns no thread here: the page says how to post, with the thread form open.
    await expect(cy.page.locator("#no-threads")).to_be_visible()
    await expect(cy.page.locator("#post-fields")).to_be_hidden()
    await expect(cy.page.locator("#thread-new")).to_have_attribute("open", "")
    title = cy.page.get_by_label("Thread title")
    await title.fill("x" * 205)
    await expect(cy.page.locator("#thread-counter")).to_have_text(
        "205 of 200 characters: 5 too many"
    )
    await cy.page.get_by_role("button", name="Start thread").click()
    await expect(cy.page.locator("#thread-error")).to_contain_text("5 characters too long")
    await expect(title).to_have_value("x" * 205)  # nothing cut
    await title.fill("From teacher to analyst")
    await expect(cy.page.locator("#thread-counter")).to_be_hidden()
    await title.press("Enter")
    body = cy.page.get_by_label("Your post")
    await expect(body).to_be_focused()
    await expect(cy.page.locator("#post-thread option:checked")).to_have_text(
        "From teacher to analyst"
    )
    await expect(cy.page.locator("#thread-new")).not_to_have_attribute("open", "")
    await body.fill("Day 1: SQL joins")
    await body.press("Control+Enter")
    await expect(cy.posts.first.locator(".post-body")).to_have_text("Day 1: SQL joins")
    await expect(cy.posts.first.locator(".thread")).to_have_text("From teacher to analyst")
    threads = await world.ana.ok("GET", "/api/threads?owner=cy")
    assert [t["title"] for t in threads["threads"]] == ["From teacher to analyst"]


async def test_limits_show_before_sending_and_nothing_is_cut(
    open_feed: OpenFeed, world: World
) -> None:
    ben = await open_feed("ben")
    sent = writes(ben.page)
    body = ben.page.get_by_label("Your post")
    counter = ben.page.locator("#post-counter")
    await body.fill("a" * 8_999)
    await expect(counter).to_be_hidden()
    await body.fill("a" * 9_500)  # near the limit: the counter shows before any send
    await expect(counter).to_have_text("9,500 of 10,000 characters")
    await body.fill("a" * 10_050)  # a paste past it: kept whole, and said so
    await expect(counter).to_have_text("10,050 of 10,000 characters: 50 too many")
    await expect(body).to_have_attribute("aria-invalid", "true")
    await ben.page.get_by_role("button", name="Post", exact=True).click()
    await expect(ben.page.locator("#post-error")).to_have_text(
        "Your post is 50 characters too long: 10,000 at most. Nothing was sent."
    )
    assert len(await body.input_value()) == 10_050
    await body.fill("   \n  ")
    await body.press("Control+Enter")
    await expect(ben.page.locator("#post-error")).to_have_text(
        "Write something first: a post cannot be blank."
    )

    # The comment box: the same, at 2,000 (it used to cut a paste to 2,000 silently).
    post = ben.posts.first
    await post.locator(".comments-toggle").click()
    field = post.get_by_label("Write a comment")
    await field.fill("b" * 2_100)
    assert len(await field.input_value()) == 2_100
    comment_counter = post.locator(".comment-form .counter")
    await expect(comment_counter).to_have_text("2,100 of 2,000 characters: 100 too many")
    await field.press("Enter")
    await expect(post.locator(".comment-form .error")).to_have_text(
        "Your comment is 100 characters too long: 2,000 at most. Nothing was sent."
    )
    await field.fill(" " * 3)
    await field.press("Enter")  # a blank send is told why nothing happened
    await expect(post.locator(".comment-form .error")).to_have_text(
        "Write something first: a comment cannot be blank."
    )
    # Exactly at the limit (2,000 characters, outer spaces not counted): sent.
    await field.fill("  " + "é" * 2_000 + "  ")
    await expect(comment_counter).to_have_text("2,000 of 2,000 characters")
    await field.press("Enter")
    await expect(post.locator(".comment")).to_have_count(1)
    assert sent == [f"POST posts/{world.history[-1]['id']}/comments"]


async def test_follow_a_community_and_a_thread_from_where_they_appear(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    cy = await open_feed("cy")
    community = cy.page.locator("#feed-actions .follow-community")
    await expect(community).to_have_accessible_name("Follow the community Learning in public")
    await community.click()
    await settled(community, True)
    assert (await follows_of(feed_server, "cy"))["communities"] == [world.community]
    thread = cy.posts.nth(3).locator(f'[data-follow="threads:{world.thread}"]')
    await expect(thread).to_have_accessible_name("Follow the thread Into data engineering")
    await thread.click()
    await settled(thread, True)
    await expect(
        cy.page.locator(f'[data-follow="threads:{world.thread}"][aria-pressed="true"]')
    ).to_have_count(20)
    assert (await follows_of(feed_server, "cy"))["threads"] == [world.thread]
    await community.click()  # unfollow
    await settled(community, False)
    await thread.click()
    await settled(thread, False)
    assert await follows_of(feed_server, "cy") == {"communities": [], "threads": [], "users": []}
    # A refused follow turns the button back and says why.
    await cy.page.route(
        "**/api/follows/**",
        lambda route: route.fulfill(
            status=429,
            content_type="application/json",
            body='{"error": {"code": "rate_limited", "message": "too many follows: try again in 2.0 s"}}',
        ),
    )
    await community.click()
    await expect(cy.page.locator("#follow-error")).to_contain_text("too many follows")
    await expect(community).to_have_attribute("aria-pressed", "false")


async def test_deleting_my_post_and_my_comment_asks_first_and_reaches_others(
    open_feed: OpenFeed, world: World
) -> None:
    ben = await open_feed("ben")
    cy = await open_feed("cy")
    newest = world.history[-1]
    # Cy comments on Ben's newest post; Cy's post controls offer no Delete (not hers).
    post_cy = cy.post(newest["body"])
    await expect(post_cy.locator("article > .delete-control")).to_have_count(0)
    await post_cy.locator(".comments-toggle").click()
    field = post_cy.get_by_label("Write a comment")
    await field.fill("Typo: DGA")
    await field.press("Enter")
    await world.ana.comment(newest["id"], "Ana's stays")
    await expect(post_cy.locator(".comment")).to_have_count(2)
    await expect(post_cy.locator(".comment").nth(1).locator(".delete")).to_have_count(0)

    post_ben = ben.post(newest["body"])
    await post_ben.locator(".comments-toggle").click()
    await expect(post_ben.locator(".comment")).to_have_count(2)

    # Cy deletes her comment: asked first; "Keep it" keeps it.
    mine = post_cy.locator(".comment").first
    await mine.get_by_role("button", name="Delete comment").click()
    keep = mine.get_by_role("button", name="Keep it")
    await expect(keep).to_be_focused()
    await expect(mine.locator(".confirm-question")).to_have_text("Delete this comment?")
    await keep.click()
    await expect(mine.get_by_role("button", name="Delete comment", exact=True)).to_be_focused()
    await mine.get_by_role("button", name="Delete comment", exact=True).click()
    await mine.locator(".confirm .danger").click()
    await expect(post_cy.locator(".comment-body")).to_have_text(["Ana's stays"])
    await expect(post_cy.locator(".comments-toggle")).to_have_text("1 comment")
    # Ben sees it go, live, and the count with it.
    await expect(post_ben.locator(".comment-body")).to_have_text(["Ana's stays"])
    await expect(post_ben.locator(".comments-toggle")).to_have_text("1 comment")

    # Ben deletes his post, asked first; it leaves Cy's page too.
    await post_ben.locator("article > .delete-control .delete").click()
    await expect(post_ben.locator(".confirm-question")).to_have_text(
        "Delete this post and its comments?"
    )
    await post_ben.get_by_role("button", name="Delete post").click()
    await expect(ben.post(newest["body"])).to_have_count(0)
    await expect(cy.post(newest["body"])).to_have_count(0)
    await expect(ben.posts.first).to_be_focused()  # the keyboard stays in the list
    assert (await world.ana.call("GET", f"/api/posts/{newest['id']}")).status_code == 404


async def test_the_following_tab_says_what_to_follow_when_nothing_is(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    dee = await open_feed("dee", query=following(feed_server, "dee"))
    hint = dee.page.locator("#following-empty")
    await expect(hint).to_be_visible()
    await expect(hint).to_contain_text("You follow nothing yet.")
    await expect(hint).to_contain_text("a community")
    await expect(dee.page.locator("#feed-empty")).to_be_hidden()
    await expect(dee.page.locator("#thread-elsewhere")).to_be_visible()
    await hint.get_by_role("link", name="Learning in public").click()
    await dee.wait_state("live")
    await expect(dee.page.locator("#feed-title")).to_have_text("Learning in public")
    # Following something with no posts yet reads differently.
    await dee.page.locator("#feed-actions .follow-community").click()
    await settled(dee.page.locator("#feed-actions .follow-community"), True)
    quiet = await FeedApi(
        feed_server.url, feed_server.token("backend", "Backend", role="service")
    ).community("Quiet")
    await FeedApi(feed_server.url, feed_server.token("dee")).follow(
        "communities", world.community, False
    )
    await FeedApi(feed_server.url, feed_server.token("dee")).follow("communities", quiet)
    dee2 = await open_feed("dee", query=following(feed_server, "dee"))
    await expect(dee2.page.locator("#feed-empty")).to_have_text(
        "No posts yet from what you follow."
    )
    await expect(dee2.page.locator("#following-empty")).to_be_hidden()


async def test_the_rooms_feed_link_opens_the_rooms_community(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    service = FeedApi(feed_server.url, feed_server.token("backend", "Backend", role="service"))
    await service.community("Another community")  # two: the link has to choose
    room = await create_room(
        feed_server.url,
        feed_server.service(),
        [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")],
        title="Ana & Ben",
    )
    page = await open_feed(
        "ana", query=f"room={room['id']}&token={feed_server.token('ana', 'Ana')}", wait_live=False
    )
    await page.page.goto(
        f"{feed_server.url}/?room={room['id']}&token={feed_server.token('ana', 'Ana')}"
    )
    link = page.page.get_by_role("link", name="Community feed")
    await link.click()
    await page.wait_state("live")
    await expect(page.page.locator("#feed-title")).to_have_text("Learning in public")
    assert f"community={world.community}" in page.page.url
    await expect(page.posts).to_have_count(20)


async def settled_box(target: Locator) -> FloatRect | None:
    """``target``'s box once two looks 0.1 s apart agree (follow buttons and counters are
    filled in after the posts: the page may still move when it first shows them)."""
    boxes: list[FloatRect | None] = [await target.bounding_box()]

    async def still() -> bool:
        boxes.append(await target.bounding_box())
        return boxes[-1] == boxes[-2]

    await wait_until(still, "the page to stop moving", every=0.1)
    return boxes[-1]


async def test_the_new_posts_bar_leaves_the_first_post_header_clear(
    open_feed: OpenFeed, world: World
) -> None:
    for device in (None, PHONE):
        cy = await open_feed("cy", device=device)
        header = cy.posts.first.locator(".post-meta")
        before = await settled_box(header)  # the page's own late parts laid out first
        await world.ben.post(world.thread, f"Fresh {device is None}")
        await expect(cy.bar).to_be_visible()
        bar = await cy.bar.bounding_box()
        after = await settled_box(header)
        assert bar is not None and before is not None and after is not None
        assert after == before  # showing the bar moved nothing
        assert bar["y"] + bar["height"] <= after["y"], (bar, after)  # and covers no header


async def test_every_page_has_a_favicon_and_no_console_error(
    open_feed: OpenFeed, feed_server: Running
) -> None:
    errors: list[str] = []
    cy = await open_feed("cy", wait_live=False)
    cy.page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    for path in ("feed.html", "", f"feed.html?{following(feed_server, 'cy')}"):
        async with cy.page.expect_response(re.compile(r"/favicon\.svg$")) as icon:
            await cy.page.goto(f"{feed_server.url}/{path}")
        response = await icon.value
        assert response.status == 200 and response.headers["content-type"] == "image/svg+xml"
    await cy.wait_state("live")
    assert errors == []


async def test_axe_finds_nothing_serious_on_the_feed_page(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    ben = await open_feed("ben")
    await world.ana.comment(world.history[-1]["id"], "Keep going")
    post = ben.posts.first
    await post.locator(".comments-toggle").click()
    await expect(post.locator(".comment")).to_have_count(1)
    await post.locator("article > .delete-control .delete").click()  # the question shown
    await ben.page.get_by_label("Your post").fill("x" * 9_990)  # the counter shown
    await ben.page.locator("#thread-new summary").click()
    await world.ben.post(world.thread, "under the bar")
    await expect(ben.bar).to_be_visible()
    assert await blocking(ben.page) == ""
    empty = await open_feed("dee", query=following(feed_server, "dee"))
    await expect(empty.page.locator("#following-empty")).to_be_visible()
    assert await blocking(empty.page) == ""
    join = await open_feed("dee", query="", wait_live=False)
    await expect(join.page.locator("#join")).to_be_visible()
    assert await blocking(join.page) == ""


async def test_comments_made_while_the_first_page_of_comments_loads_are_shown(
    open_feed: OpenFeed, world: World
) -> None:
    """The first page of a post's comments is read before Cy's comment and Ana's exist, but
    arrives after both: each is shown once all the same (the page had counted them, and
    then dropped them from view: the answer to its POST and the live event came while the
    list was on its way)."""
    cy = await open_feed("cy")
    newest = world.history[-1]
    held = asyncio.Event()
    listed: list[Any] = []

    async def late(route: Any) -> None:
        answer = await route.fetch()  # read now, before either comment exists
        listed.append(answer)
        await held.wait()
        await route.fulfill(response=answer)

    await cy.page.route(re.compile(r"/api/posts/[^/?]+\?"), late)
    post = cy.post(newest["body"])
    await post.locator(".comments-toggle").click()
    await wait_until(lambda: bool(listed), "the first page of comments read", 10)
    field = post.get_by_label("Write a comment")
    await field.fill("Cy's, while it loads")
    # Cy's comment is stored before Ana's, so the order the page must show is known
    async with cy.page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/comments")
    ) as stored:
        await field.press("Enter")
    assert (await stored.value).ok
    await world.ana.comment(newest["id"], "Ana's, while it loads")
    await expect(post.locator(".comments-toggle")).to_have_text("2 comments")
    held.set()
    await expect(post.locator(".comment-body")).to_have_text(
        ["Cy's, while it loads", "Ana's, while it loads"]
    )


async def test_keyboard_alone_posts_comments_follows_and_deletes(
    open_feed: OpenFeed, world: World, feed_server: Running
) -> None:
    ben = await open_feed("ben")
    page = ben.page
    body = page.get_by_label("Your post")
    await tab_to(page, body)
    await page.keyboard.type("Typed, not clicked")
    await tab_to(page, page.get_by_role("button", name="Post", exact=True))
    await page.keyboard.press("Enter")
    await expect(ben.posts.first.locator(".post-body")).to_have_text("Typed, not clicked")

    cy = await open_feed("cy")
    page = cy.page
    follow = page.locator("#feed-actions .follow-community")
    await tab_to(page, follow)
    await page.keyboard.press("Space")
    await settled(follow, True)
    post = cy.posts.first
    await tab_to(page, post.locator('[data-follow="users:ben"]'))
    await page.keyboard.press("Enter")
    await expect(post.locator('[data-follow="users:ben"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await tab_to(page, post.locator(".comments-toggle"))
    await page.keyboard.press("Enter")
    field = post.get_by_label("Write a comment")
    await expect(field).to_be_focused()
    await page.keyboard.type("Well done")
    await page.keyboard.press("Enter")
    await expect(post.locator(".comment-body")).to_have_text(["Well done"])
    await tab_to(page, post.locator(".comment .delete"), key="Shift+Tab")  # the list is above
    await page.keyboard.press("Enter")
    await expect(post.get_by_role("button", name="Keep it")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(post.locator(".comment")).to_have_count(0)
    follows = await follows_of(feed_server, "cy")
    assert follows["communities"] == [world.community] and follows["users"] == ["ben"]


def test_the_pages_limits_are_the_servers() -> None:
    """web/js/feedlimits.js shows the limits realtime/feed/model.py enforces."""
    from pathlib import Path

    from realtime.feed.model import MAX_COMMENT, MAX_POST, MAX_TITLE

    source = (Path(__file__).resolve().parents[2] / "web/js/feedlimits.js").read_text()
    match = re.search(
        r"LIMITS = Object\.freeze\(\{ post: ([\d_]+), comment: ([\d_]+), title: ([\d_]+) \}\)",
        source,
    )
    assert match is not None
    numbers = [int(n.replace("_", "")) for n in match.groups()]
    assert numbers == [MAX_POST, MAX_COMMENT, MAX_TITLE]
