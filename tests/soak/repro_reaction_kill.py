"""Reproduction: a reaction acknowledged just before a kill -9 never reaches the feed.

``PUT /api/posts/{id}/reactions/{kind}`` commits the reaction row and answers 200; the
``feed.reaction`` event that carries the post's new counts is only scheduled in memory
(``ReactionAggregator.touch``: at once, or at the end of the 0.5 s window when the post had
an event less than a window ago) and appended later through the writer. If the process dies
in between, no process ever appends it: followers (live or resuming with ``since``) keep
the old counts until some later reaction on the same post, although the database and REST
have the new ones. docs/protocol.md promises "the last event of a burst has the final
counts". Fixed in the commit after 3503306: the reaction marks its post in
``reaction_pending`` in its own transaction, and any process appends the owed event.

    . .venv/bin/activate
    python tests/soak/repro_reaction_kill.py     # exit status 1 while the bug is there
    MENTEO_SRC=/path/to/checkout python tests/soak/repro_reaction_kill.py   # another tree

One process on a temporary SQLite file (nothing else needed): post, react twice within the
window, kill -9, restart, and compare the counts of the feed's last ``feed.reaction`` event
with ``GET /api/feed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
from pathlib import Path

import httpx
import orjson
import websockets
from infra import launcher, token

REPO = Path(__file__).resolve().parents[2]


async def main() -> int:
    src = Path(os.environ.get("MENTEO_SRC", REPO))
    tmp = Path(tempfile.mkdtemp(prefix="menteo-repro-"))
    secret = secrets.token_urlsafe(48)
    env = {"MENTEO_SECRET": secret, "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/r.db"}
    server = launcher("A", env, src, tmp / "server.log")
    await server.start()
    service = {"authorization": "Bearer " + token(secret, "backend", role="service")}
    ana = {"authorization": "Bearer " + token(secret, "ana")}
    ben = {"authorization": "Bearer " + token(secret, "ben")}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            community = (
                await http.post("/api/communities", json={"name": "C"}, headers=service)
            ).json()["id"]
            thread = (
                await http.post(
                    "/api/threads", json={"title": "T", "community_id": community}, headers=ana
                )
            ).json()["id"]
            post = (
                await http.post(f"/api/threads/{thread}/posts", json={"body": "hello"}, headers=ana)
            ).json()["id"]
            # The first reaction's event goes out at once; the second falls in the window.
            for kind in ("like", "celebrate"):
                resp = await http.put(f"/api/posts/{post}/reactions/{kind}", headers=ben)
                assert resp.status_code == 200 and resp.json()["changed"], resp.text
        server.kill()  # within the 0.5 s window: the second event is only a timer
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            page = (await http.get(f"/api/feed?community={community}", headers=ben)).json()
        stored = page["posts"][0]["reactions"]
        url = f"{server.ws}/feed/ws?token={token(secret, 'cy')}&community={community}&since=0"
        reactions = []
        async with websockets.connect(url) as ws:
            # Every event since 0, then whatever arrives live, until the final counts come
            # or 20 s pass (a restarted process appends owed counts within about 10 s).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    while not reactions or reactions[-1]["counts"] != stored:
                        frame = orjson.loads(await ws.recv())
                        if frame["type"] == "feed.reaction":
                            reactions.append(frame)
        followed = reactions[-1]["counts"] if reactions else None
        print(f"GET /api/feed counts:              {stored}")
        print(f"last feed.reaction event's counts: {followed}  ({len(reactions)} events)")
        if followed != stored:
            print(
                "BUG: a follower never learns the final counts (the event died with the "
                "process that was to append it)"
            )
            return 1
        print("ok: the feed carries the final counts")
        return 0
    finally:
        server.kill()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
