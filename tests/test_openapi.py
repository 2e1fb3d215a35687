"""``GET /api/openapi.json``: a valid OpenAPI 3.1 document that describes every REST route,
and a bounded schemathesis run against a live server on each backend that finds no 5xx and
no answer its schema does not allow."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from realtime.api import demo as demo_api
from realtime.api import openapi, schema
from realtime.app import create_app
from tests.backends import Backend
from tests.servers import Running, make_settings

# What the run checks of every answer: no 5xx, a documented status, content type, body and
# headers as the document says.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Examples per operation, per pass and mode: about 30 operations x 3 passes x (8 + 4)
# requests, well under a minute per backend.
POSITIVE, NEGATIVE = 8, 4
FUZZ_SECONDS = 90  # the run's bound (CI's machine is slower than a laptop)


def app_routes(tmp_path: Path) -> list[Any]:
    settings = make_settings(Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'db'}"))
    return list(create_app(settings, extra_routes=demo_api.routes(demo_api.DemoSite({}))).routes)


def test_the_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    document = schema.document(app_routes(tmp_path), openapi.OPERATIONS, version="test")
    validate(document)  # raises on any fault
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


def test_every_rest_route_has_an_operation_and_every_operation_a_route(tmp_path: Path) -> None:
    routes = app_routes(tmp_path)
    assert schema.undocumented(routes, openapi.OPERATIONS) == [], (
        "a REST route without an operation: declare one beside its handler "
        "(``operations`` in its module, api/schema.py)"
    )
    document = schema.document(routes, openapi.OPERATIONS, version="test")
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert described == set(schema.api_routes(routes))
    # No operation is declared without its route: a mistyped path or method is found here.
    routed = set(schema.api_routes(routes))
    assert [op.key for op in openapi.OPERATIONS if op.key not in routed] == []
    assert not any(p.startswith("/demo") for p in document["paths"])


async def test_the_served_document_is_the_built_one(server: Running) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        served = await http.get("/api/openapi.json")  # no token needed
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    document = served.json()
    validate(document)
    paths = document["paths"]
    assert "bearer" in str(paths["/api/rooms"]["post"]["security"])
    assert paths["/api/client-config"]["get"]["security"] == []
    assert {"201", "400", "401", "403", "413", "503"} <= set(
        paths["/api/rooms"]["post"]["responses"]
    )


async def _fixtures(server: Running) -> dict[str, str]:
    """A room (Ana mentor, Ben mentee), a community, Ana's thread with a post, a roadmap:
    real ids for the path parameters."""
    ana = {"authorization": "Bearer " + server.token("ana", "Ana")}
    async with httpx.AsyncClient(base_url=server.url, headers=server.service()) as http:
        members = [
            {"user_id": "ana", "name": "Ana", "role": "mentor"},
            {"user_id": "ben", "name": "Ben", "role": "mentee"},
        ]
        room = (await http.post("/api/rooms", json={"title": "Fuzz", "members": members})).json()
        community = (await http.post("/api/communities", json={"name": "Fuzzers"})).json()
        steps = {"title": "Map", "steps": [{"title": "One"}, {"title": "Two"}]}
        roadmap = (await http.post("/api/roadmaps", json=steps)).json()
        thread = await http.post(
            "/api/threads", json={"title": "Growth", "community_id": community["id"]}, headers=ana
        )
        post = await http.post(
            f"/api/threads/{thread.json()['id']}/posts", json={"body": "hello"}, headers=ana
        )
    return {
        "room_id": room["id"],
        "thread_id": thread.json()["id"],
        "post_id": post.json()["id"],
        "target_id": community["id"],
        "item_id": f"roadmap:{roadmap['id']}:1",
        "user_id": "ben",
    }


def _examples(strategy: Any, examples: int, url: str, token: str) -> int:
    """Run ``examples`` cases of ``strategy`` with ``token``; the requests sent."""
    sent = 0
    headers = {"authorization": "Bearer " + token}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)

    run()
    return sent


def _fuzz(
    document: dict[str, Any], url: str, ids: dict[str, str], tokens: list[str]
) -> tuple[int, list[str]]:
    """Every operation, with each token, in both modes: the requests sent, and what failed
    (each operation's first failure, with the request that made it)."""
    loaded = schemathesis.openapi.from_dict(document)
    sent, failures = 0, []
    modes = ((GenerationMode.POSITIVE, POSITIVE), (GenerationMode.NEGATIVE, NEGATIVE))
    for result in loaded.get_all_operations():
        operation = result.ok()
        names = [p.name for p in operation.path_parameters]
        fixed = {name: ids[name] for name in names if name in ids}
        # The service and the member on the real ids, then the service on generated ones
        # (a NUL in an id was a 500 on PostgreSQL: api/common.py, nul_refusal).
        for token, path_parameters in ((tokens[0], fixed), (tokens[1], fixed), (tokens[0], {})):
            for mode, examples in modes:
                strategy = operation.as_strategy(mode, path_parameters=path_parameters or None)
                try:
                    sent += _examples(strategy, examples, url, token)
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no input
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
    return sent, failures


async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    server: Running,
) -> None:
    ids = await _fixtures(server)
    async with httpx.AsyncClient(base_url=server.url) as http:
        document = (await http.get("/api/openapi.json")).json()
    tokens = [server.token("backend", "Backend", role="service"), server.token("ana", "Ana")]
    started = time.monotonic()
    async with asyncio.timeout(FUZZ_SECONDS):
        sent, failures = await asyncio.to_thread(_fuzz, document, server.url, ids, tokens)
    assert failures == [], "\n\n".join(failures)
    assert sent >= 100, f"only {sent} requests sent"
    print(f"schemathesis: {sent} requests in {time.monotonic() - started:.1f} s")


async def test_a_nul_in_a_path_or_a_query_is_refused_not_a_server_error(server: Running) -> None:
    """PostgreSQL refuses a NUL in text: a lookup by such an id was a 500 there."""
    async with httpx.AsyncClient(base_url=server.url, headers=server.service()) as http:
        for method, path in (
            ("GET", "/api/rooms/a%00b"),
            ("POST", "/api/rooms/a%00b/messages"),
            ("GET", "/api/posts/%00"),
            ("PUT", "/api/posts/%00/reactions/like"),
            ("GET", "/api/threads/%00"),
        ):
            answer = await http.request(method, path, json={"id": "c1", "body": "hi"})
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
        for path in ("/api/feed?community=%00", "/feed/stream?community=%00"):
            answer = await http.get(path)
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["error"]["code"] == "invalid"


async def test_removing_a_member_of_no_such_room_is_404(server: Running) -> None:
    """Was a 503 (``unavailable``: the append failed), found by the schemathesis run."""
    async with httpx.AsyncClient(base_url=server.url, headers=server.service()) as http:
        answer = await http.delete("/api/rooms/0/members/ana")
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "not_found"
