"""``menteo-realtime serve --demo`` as a user runs it: a real process on a free port with
its own SQLite file. The links it prints work: each leads to its page with the demo's token
endpoint as ``token_url``, the mentor's room socket opens with the token it mints and shows
the roadmap checklist, the feed page loads and the feed holds the seeded growth thread. A
second run on the same file reuses what the first one made, and, with no MENTEO_SECRET,
accepts the first run's tokens (the dev secret is kept in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import websockets

from menteo_testkit.waits import within
from realtime import demo
from tests.client import RoomClient

READY = re.compile(r"Menteo demo ready at (http://\S+?)\.? ")
LINK = re.compile(r"^\s+(?P<label>[^:]+): (?P<url>http://\S+)$")
LABELS = ["Ana (mentor), room", "Ben (mentee), room", "Ben, community feed", "Ana, community feed"]
# The demo's feed, newest first: the milestone was shared after the first post.
FEED_BODIES = [demo.BEN_POSTS[2], demo.BEN_POSTS[1], demo.MILESTONE, demo.BEN_POSTS[0]]


@dataclass
class DemoRun:
    base_url: str
    links: dict[str, str]
    output: list[str] = field(default_factory=list)

    async def query(self, label: str) -> dict[str, str]:
        """Open the link as a browser does: the query of the page it leads to, and the token
        that page gets from its ``token_url`` (the demo's token endpoint) with the link's
        cookie."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            opened = await http.get(self.links[label].removeprefix(self.base_url))
            assert opened.status_code == 303, opened.text
            page = urlsplit(opened.headers["location"])
            query = {k: v[0] for k, v in parse_qs(page.query).items()}
            minted = await http.get(query["token_url"])  # the cookie goes with it
            assert minted.status_code == 200, minted.text
        return query | {"path": page.path, "token": minted.json()["token"]}

    @property
    def ws(self) -> str:
        return self.base_url.replace("http://", "ws://")


@contextlib.asynccontextmanager
async def run_demo(database: Path, port: int = 0, **settings: str) -> AsyncIterator[DemoRun]:
    """``serve --demo --port PORT`` on ``database`` (more ``MENTEO_*`` variables in
    ``settings``); yields once it printed its links."""
    env = {
        **os.environ,
        "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("MENTEO_SECRET", "MENTEO_REDIS_URL"):  # the dev defaults, as on a laptop
        env.pop(name, None)
    env.update(settings)
    proc = await asyncio.to_thread(  # fork and exec off the event loop
        subprocess.Popen,
        [sys.executable, "-m", "realtime.cli", "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    output: list[str] = []
    drain: asyncio.Future[None] | None = None

    def read_rest() -> None:
        assert proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in proc.stdout:
                output.append(raw.decode(errors="replace"))

    base_url = ""
    links: dict[str, str] = {}
    try:
        async with asyncio.timeout(60):
            while len(links) < len(LABELS):
                line = (await loop.run_in_executor(None, proc.stdout.readline)).decode()
                if not line:
                    raise AssertionError("the demo exited:\n" + "".join(output))
                output.append(line)
                if (ready := READY.search(line)) is not None:
                    base_url = ready.group(1)
                elif base_url and (link := LINK.match(line.rstrip("\n"))) is not None:
                    links[link["label"]] = link["url"]
        drain = loop.run_in_executor(None, read_rest)
        yield DemoRun(base_url, links, output)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 20)
            except TimeoutError:
                proc.kill()
                proc.wait()
        if drain is not None:  # the pipe's end: the process has exited
            await within(drain, "the demo's output to end", 5)
        proc.stdout.close()


async def test_demo_prints_working_links_once_listening_and_a_rerun_reuses_them(
    tmp_path: Path,
) -> None:
    database = tmp_path / "demo.db"
    async with run_demo(database) as first:
        assert list(first.links) == LABELS
        text = "".join(first.output)
        # The links come after the server listens (uvicorn says so first).
        assert text.index("Uvicorn running on") < text.index("Menteo demo ready at")
        port = int(first.base_url.rsplit(":", 1)[1])
        assert port != 0

        # The mentor's link opens the room socket: the room, both members, the roadmap.
        ana = await first.query("Ana (mentor), room")
        room = await RoomClient.connect(first.ws, ana["room"], ana["token"])
        welcome = room.welcome
        assert welcome["room"]["title"] == demo.ROOM_TITLE
        assert welcome["you"]["user_id"] == "ana"
        roles = {m["user_id"]: m["role"] for m in welcome["room"]["members"]}
        assert roles == {"ana": "mentor", "ben": "mentee"}
        items = welcome["checklist"]["items"]
        assert [item["title"] for item in items] == [step["title"] for step in demo.ROADMAP_STEPS]
        assert (items[0]["done"], items[0]["verified"]) == (True, True)
        assert [m["body"] for m in welcome["history"]] == [body for _, body in demo.CHAT]
        await room.close()

        # The mentee's link is the same room as Ben.
        ben_room = await first.query("Ben (mentee), room")
        assert ben_room["room"] == ana["room"]

        # The feed link: the page loads, and its feed holds Ben's growth thread.
        feed = await first.query("Ben, community feed")
        async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as http:
            page = await http.get(feed["path"])
            assert page.status_code == 200
            assert 'src="js/feed.js"' in page.text
            auth = {"authorization": "Bearer " + feed["token"]}
            resp = await http.get(f"/api/feed?community={feed['community']}", headers=auth)
            assert resp.status_code == 200, resp.text
            posts = resp.json()["posts"]
            notes = await http.get(f"/api/rooms/{ana['room']}/notes", headers=auth)
        assert notes.json()["text"] == demo.NOTES  # Ana's agenda in the shared notes
        assert [p["body"] for p in posts] == FEED_BODIES
        assert posts[2]["milestone"]["title"] == demo.ROADMAP_STEPS[0]["title"]
        assert posts[2]["milestone"]["verified_by"] == "Ana"
        assert posts[0]["comments"] == 1
        assert posts[0]["reactions"]["celebrate"] == 1
        assert {p["thread_title"] for p in posts} == {demo.THREAD_TITLE}

        # And the live feed socket takes the link's token.
        url = f"{first.ws}/feed/ws?token={feed['token']}&community={feed['community']}"
        async with websockets.connect(url, subprotocols=["menteo.v1.json"]) as ws:  # type: ignore[list-item]
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["type"] == "welcome"
        assert frame["filter"] == {"community": feed["community"]}

    # A second run on the same database: no crash, the same room, no duplicate posts.
    async with run_demo(database) as second:
        assert (await second.query("Ana (mentor), room"))["room"] == ana["room"]
        again = await second.query("Ben, community feed")
        assert again["community"] == feed["community"]
        async with httpx.AsyncClient(base_url=second.base_url, timeout=10) as http:
            auth = {"authorization": "Bearer " + again["token"]}
            resp = await http.get(f"/api/feed?community={again['community']}", headers=auth)
            checklist = await http.get(f"/api/rooms/{ana['room']}/checklist", headers=auth)
            notes = await http.get(f"/api/rooms/{ana['room']}/notes", headers=auth)
        assert [p["body"] for p in resp.json()["posts"]] == FEED_BODIES
        assert resp.json()["posts"][0]["comments"] == 1
        assert notes.json()["text"] == demo.NOTES  # written once
        progress = checklist.json()["progress"]
        assert progress == {"done": 1, "verified": 1, "total": len(demo.ROADMAP_STEPS)}
        # The chat messages were sent once, however often the demo ran.
        ana_room = await RoomClient.connect(
            second.ws, ana["room"], (await second.query(LABELS[0]))["token"]
        )
        assert len(ana_room.welcome["history"]) == len(demo.CHAT)
        await ana_room.close()
        # A page the first run opened keeps its token: the restarted server takes it.
        kept = await RoomClient.connect(second.ws, ana["room"], ana["token"])
        assert kept.welcome["you"]["user_id"] == "ana"
        await kept.close()
