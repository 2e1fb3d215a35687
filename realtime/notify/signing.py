"""The ``Menteo-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` of
``"<t>.<raw body>"`` under ``MENTEO_WEBHOOK_SECRET`` (docs/webhooks.md shows a receiver)."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE = "Menteo-Signature"
EVENT_ID = "Menteo-Event-Id"
TOLERANCE = 300.0  # seconds a receiver should accept between ``t`` and its own clock


def sign(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def headers(secret: str, event_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Every request's headers; signed at send time, so a retry carries a fresh ``t``."""
    t = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        EVENT_ID: event_id,
        SIGNATURE: sign(secret, body, t),
    }


def verify(
    secret: str, body: bytes, header: str, *, tolerance: float = TOLERANCE, now: float | None = None
) -> bool:
    """What a receiver does: the header's ``t`` is recent and one ``v1`` matches."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    macs = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not macs:
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    wanted = sign(secret, body, t).rpartition("v1=")[2]
    return any(hmac.compare_digest(wanted, mac) for mac in macs)
