"""One signed delivery attempt and what its outcome means.

A 2xx completes the notification. A network error, a timeout, a 429 or a 5xx is retried
after ``Retry-After`` when the receiver gave one (up to ``RETRY_AFTER_MOST``), else after an
exponential backoff with jitter; another status fails it at once, as does the attempt limit.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from .signing import headers

FIRST_RETRY = 1.0  # seconds before the second attempt; doubling from there
MOST_RETRY = 3600.0  # the longest wait between two attempts
RETRY_AFTER_MOST = 3600.0  # a receiver's Retry-After is honoured up to this
ANSWER_KEPT = 1024  # bytes of a refusal's body read (its error keeps 200 characters)


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str  # "ok", "retry" or "failed"
    error: str | None = None
    wait: float = 0.0  # retry: seconds until the next attempt


def backoff(attempt: int) -> float:
    """The wait after the ``attempt``-th failed attempt (1-based): the upper half of the
    doubled step is drawn at random, so receivers that come back see spread retries."""
    step = min(FIRST_RETRY * 2 ** (attempt - 1), MOST_RETRY)
    return random.uniform(step / 2, step)


def retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MOST)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - now), RETRY_AFTER_MOST)


async def _start_of(answer: httpx.Response) -> bytes:
    """The first ``ANSWER_KEPT`` bytes of a refusal's body: enough for the error it is
    logged and listed with, never the whole of a large answer in memory."""
    kept = b""
    async for chunk in answer.aiter_bytes():
        kept += chunk
        if len(kept) >= ANSWER_KEPT:
            break
    return kept[:ANSWER_KEPT]


async def attempt(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    event_id: str,
    body: bytes,
    *,
    timeout: float,
    attempts: int,
    max_attempts: int,
    now: float,
) -> Outcome:
    """POST once; ``attempts`` is how many were made before this one."""
    last = attempts + 1 >= max_attempts
    try:
        # httpx's timeout bounds each step; this bounds the whole (a receiver dripping
        # bytes never holds the attempt longer).
        async with (
            asyncio.timeout(timeout),
            client.stream(
                "POST", url, content=body, headers=headers(secret, event_id, body)
            ) as answer,
        ):
            status = answer.status_code
            said = b"" if 200 <= status < 300 else await _start_of(answer)
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        return Outcome("failed", error) if last else Outcome("retry", error, backoff(attempts + 1))
    if 200 <= status < 300:
        return Outcome("ok")
    error = f"HTTP {status}: {said.decode(errors='replace')[:200]}".strip()
    if status != 429 and status < 500:
        return Outcome("failed", error)
    if last:
        return Outcome("failed", error)
    wait = retry_after(answer.headers.get("retry-after"), now)
    return Outcome("retry", error, backoff(attempts + 1) if wait is None else wait)
