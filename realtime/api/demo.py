"""The demo's token endpoint: routed by ``serve --demo`` only, never by ``serve``.

What it authenticates is the person at the server's terminal. ``serve --demo`` prints one
link per demo user and page, ``/demo/open?as=USER&to=room|feed&exp=T&key=K``, where ``K`` is
an HMAC of the user and the link's expiry under the server's secret. Opening it sets a cookie
for that user alone (``menteo_demo_USER``: HttpOnly, SameSite=Strict, path ``/demo/``, an
HMAC of the user and the cookie's own expiry) and redirects to the page with
``token_url=/demo/token?as=USER`` and no token in the URL. ``GET /demo/token`` then mints a
short-lived member token for that user, and only when the cookie is valid, the user is one
the demo made, and the request comes from a page of this origin. It never mints a service
token, nor one for any other user; without ``--demo`` neither path exists (404).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..auth import issue_token
from ..sockets.origin import origin_allowed
from .common import ApiError, int_param, json_response, state_of

LINK_TTL = 8 * 3600  # seconds a printed link may be opened, and its cookie then lasts
TOKEN_TTL = 900  # seconds a minted token lasts by default (the page renews it before then)
MIN_TTL, MAX_TTL = 60, 3600  # the bounds of ``ttl`` (a short one shows the renewal at work)
COOKIE = "menteo_demo_"  # + the user id
PATH = "/demo/"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@dataclass
class DemoSite:
    """The demo's users (id -> name) and, once seeded, its room and community."""

    users: dict[str, str]
    room_id: str | None = None
    community_id: str | None = None

    def page(self, to: str, user_id: str) -> str:
        """The page a link opens, with the token endpoint as its ``token_url``."""
        if self.room_id is None or self.community_id is None:
            raise ApiError(503, "unavailable", "the demo is still being prepared: try again")
        token_url = f"{PATH}token?{urlencode({'as': user_id})}"
        if to == "room":
            return "/?" + urlencode({"room": self.room_id, "token_url": token_url})
        if to == "feed":
            query = {"community": self.community_id, "token_url": token_url}
            return "/feed.html?" + urlencode(query)
        raise ApiError(404, "not_found", "a demo link opens 'room' or 'feed'")


def _mac(secret: str, purpose: str, user_id: str, exp: int) -> str:
    message = f"menteo-demo-{purpose}\x00{user_id}\x00{exp}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def link(base_url: str, secret: str, user_id: str, to: str, *, now: float | None = None) -> str:
    """A link to print: opening it (before ``LINK_TTL`` runs out) lets that browser renew
    ``user_id``'s tokens."""
    exp = int(now if now is not None else time.time()) + LINK_TTL
    query = {"as": user_id, "to": to, "exp": exp, "key": _mac(secret, "link", user_id, exp)}
    return f"{base_url}{PATH}open?{urlencode(query, quote_via=quote)}"


def _user(site: DemoSite, request: Request) -> str:
    user_id = request.query_params.get("as", "")
    if user_id not in site.users:
        raise ApiError(403, "forbidden", "the demo signs in only its own users")
    return user_id


def _signed_until(value: str, secret: str, purpose: str, user_id: str) -> int | None:
    """The expiry ``value`` (``EXP.MAC``) vouches for, or None when it is forged or past."""
    exp_text, _, mac = value.partition(".")
    if not exp_text.isdigit() or len(exp_text) > 12:
        return None
    exp = int(exp_text)
    if exp < time.time() or not hmac.compare_digest(mac, _mac(secret, purpose, user_id, exp)):
        return None
    return exp


def open_link(site: DemoSite) -> Route:
    async def demo_open(request: Request) -> Response:
        secret = state_of(request).settings.secret
        user_id = _user(site, request)
        params = request.query_params
        signed = f"{params.get('exp', '')}.{params.get('key', '')}"
        if _signed_until(signed, secret, "link", user_id) is None:
            raise ApiError(
                403,
                "forbidden",
                "this demo link has expired or was printed by another server: open a link "
                "that `menteo-realtime serve --demo` printed",
            )
        response = RedirectResponse(site.page(params.get("to", ""), user_id), 303, NO_STORE)
        exp = int(time.time()) + LINK_TTL
        response.set_cookie(
            COOKIE + user_id,
            f"{exp}.{_mac(secret, 'cookie', user_id, exp)}",
            max_age=LINK_TTL,
            path=PATH,
            httponly=True,
            samesite="strict",
        )
        return response

    return Route(f"{PATH}open", demo_open, methods=["GET"])


def _from_this_origin(request: Request) -> bool:
    """A page of this origin (or the address bar) asks: never another site's page, even one
    on the same host (``Sec-Fetch-Site: same-site`` covers other ports of 127.0.0.1)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    return origin_allowed(request.headers.get("origin"), request.headers.get("host"), ())


def token_endpoint(site: DemoSite) -> Route:
    async def demo_token(request: Request) -> Response:
        secret = state_of(request).settings.secret
        user_id = _user(site, request)
        if not _from_this_origin(request):
            raise ApiError(403, "forbidden", "the demo's tokens are for its own pages only")
        ttl = int_param(request, "ttl", TOKEN_TTL, lo=MIN_TTL, hi=MAX_TTL)
        cookie = request.cookies.get(COOKIE + user_id, "")
        if _signed_until(cookie, secret, "cookie", user_id) is None:
            raise ApiError(
                401,
                "unauthorized",
                f"open the demo link for {site.users[user_id]} that the server printed first",
            )
        token = issue_token(secret, user_id, site.users[user_id], ttl=ttl or TOKEN_TTL)
        response = json_response({"token": token})
        response.headers.update(NO_STORE)
        return response

    return Route(f"{PATH}token", demo_token, methods=["GET"])


def routes(site: DemoSite) -> list[Route]:
    return [open_link(site), token_endpoint(site)]
