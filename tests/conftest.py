from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from menteo_testkit.redis_server import RedisServer
from tests import backends, feed_client
from tests.backends import Backend, make_backend
from tests.ci import on_ci, skip_or_fail
from tests.client import RoomClient, create_room
from tests.notes_client import NotesClient
from tests.servers import Running, make_settings, run_server

# Hypothesis profiles (README, "Testing"). The socket-level properties take their number of
# examples from the profile: "dev" on a developer's machine, "ci" on CI, "long" on demand.
# "ci" is derandomized (the same examples every run: a failure replays locally with
# HYPOTHESIS_PROFILE=ci) and reports its first failure without shrinking, so that a failing
# run stays bounded; "ci-shrink" runs the same examples and shrinks the failure. Every
# failure prints its @reproduce_failure blob. No deadline: an example is a real server round
# trip, bounded by each wait's own timeout.
_COMMON = settings(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
_NO_SHRINK = tuple(p for p in Phase if p not in (Phase.shrink, Phase.explain))
settings.register_profile("dev", _COMMON, max_examples=10)
settings.register_profile(
    "ci", _COMMON, max_examples=50, derandomize=True, database=None, phases=_NO_SHRINK
)
settings.register_profile("ci-shrink", settings.get_profile("ci"), phases=tuple(Phase))
settings.register_profile("long", _COMMON, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if on_ci() else "dev"))
SHRINK_SECONDS = 300  # Hypothesis gives up shrinking after five minutes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give property tests the time their profile needs: the suite's 120 s per 50 examples,
    and Hypothesis' own bound on shrinking when the profile shrinks (a pytest timeout that
    fires inside an example would count as one more failure to shrink)."""
    profile = settings.default
    seconds = 120 * max(1.0, profile.max_examples / 50)
    if Phase.shrink in profile.phases:
        seconds += SHRINK_SECONDS
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.timeout(seconds))


@pytest.fixture(scope="session", autouse=True)
def worker_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Under pytest-xdist (``make test``) each worker runs its own ``redis-server`` on a free
    port (see tests/backends.py); a single process, or a URL given in
    ``MENTEO_TEST_REDIS_URL``, uses the shared one."""
    if (
        not backends.WORKER
        or "MENTEO_TEST_REDIS_URL" in os.environ
        or not shutil.which("redis-server")
    ):  # without the binary, the shared URL: its tests skip (fail on CI) if it is not up
        yield
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    asyncio.run(server.start())
    backends.REDIS_URL = server.url
    try:
        yield
    finally:
        server.stop()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A private redis-server, so a test can stop and restart it (it restarts empty)."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not on PATH")
    proc = RedisServer(tmp_path)
    await proc.start()
    try:
        yield proc
    finally:
        proc.kill()


CLOSE_TIMEOUT = 1.0  # seconds for a client's close handshake at teardown


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    # Every client is closed even when one fails; the first failure is raised after. This runs
    # after the server's teardown: a client that stopped reading (its queue full of frames the
    # test never read) never sees the server's close, so its own close waits out its
    # close_timeout (websockets' default is 10 s); a short one, all at once.
    for client in RoomClient.opened:
        client.ws.close_timeout = CLOSE_TIMEOUT
    closers = [c.ws.close() for c in RoomClient.opened] + [c.close() for c in NotesClient.opened]
    RoomClient.opened.clear()
    NotesClient.opened.clear()
    closers.append(feed_client.close_all())
    results = await asyncio.gather(*closers, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every test that takes this runs on both: the embedded default and production's."""
    return await make_backend(request.param, tmp_path)


@pytest.fixture
async def server(backend: Backend) -> AsyncIterator[Running]:
    async with run_server(make_settings(backend)) as running:
        yield running


@pytest.fixture
async def room(server: Running) -> dict[str, Any]:
    return await create_room(
        server.url,
        server.service(),
        [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")],
        title="Ana & Ben",
    )
