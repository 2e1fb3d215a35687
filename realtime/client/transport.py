"""Where the client's sockets go and how they carry the token: the one place for both, and
the backoff between attempts."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from ..protocol import SUBPROTOCOL_JSON, TOKEN_SUBPROTOCOL

SUBPROTOCOL = SUBPROTOCOL_JSON

QueryValue = str | int | None


@dataclass(frozen=True, slots=True)
class SocketTarget:
    """A socket's URL and the subprotocols it offers."""

    url: str
    subprotocols: tuple[str, ...]


def http_base(url: str) -> str:
    """The server's base URL as ``http(s)://host[:port]/prefix/`` (``ws://`` and ``wss://``
    are taken too; a query or fragment is dropped)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a server URL (http, https, ws or wss): {url!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def path_part(value: str) -> str:
    """An id as one segment of a path (a room id with ``/`` or ``?`` stays one segment)."""
    return quote(value, safe="")


def socket_target(
    base: str,
    path: str,
    token: str,
    query: Mapping[str, QueryValue] | None = None,
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,),
) -> SocketTarget:
    """The socket at ``path`` (relative to the server's base, e.g. ``rooms/R/ws``) with its
    own ``query`` (``None`` values left out), carrying ``token``.

    The token is offered as a ``menteo.token.<token>`` subprotocol, never selected by the
    server (docs/protocol.md, "Authentication"): it stays out of URLs and proxy logs."""
    http = urlsplit(http_base(base))
    scheme = "wss" if http.scheme == "https" else "ws"
    params = {k: str(v) for k, v in (query or {}).items() if v is not None}
    full = http.path + path.lstrip("/")
    url = urlunsplit((scheme, http.netloc, full, urlencode(params), ""))
    return SocketTarget(url, (*subprotocols, TOKEN_SUBPROTOCOL + token))


PROMPT_JITTER = 0.1  # seconds: the most a first reconnect waits


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 first). Attempt 0 follows a
    socket that was live, or a 1012 (another process serves already): it goes at once,
    after at most ``PROMPT_JITTER`` s so that a restarted server's clients do not all come
    back in the same millisecond. From attempt 1 (the one before failed) the wait is
    exponential, capped, with "equal jitter" (between half and all of the step)."""
    if attempt <= 0:
        return rand() * min(PROMPT_JITTER, base)
    step = min(cap, base * 2.0 ** min(attempt - 1, 30))
    return step / 2 + rand() * step / 2
