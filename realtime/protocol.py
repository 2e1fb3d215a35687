"""The room socket's wire protocol: codecs, client frame validation, error and close codes.

Imports nothing of ours, so every layer (and the tests) can use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

SUBPROTOCOL_JSON = "menteo.v1.json"
SUBPROTOCOL_MSGPACK = "menteo.v1.msgpack"
# The notes socket speaks y-websocket's messages; a client may offer this name (a browser
# must offer one the server selects when it also offers a token below).
SUBPROTOCOL_NOTES = "menteo.notes.v1"
# ``menteo.token.<token>``: a token offered as a subprotocol, never selected. Browsers cannot
# set headers on a WebSocket; this keeps the token out of the URL, and so out of proxy logs.
TOKEN_SUBPROTOCOL = "menteo.token."


class Close:
    """WebSocket close codes the server uses (documented in docs/protocol.md)."""

    NORMAL = 1000
    POLICY = 1008  # rate limit exceeded
    TOO_BIG = 1009
    SERVER_RESTART = 1012  # shutting down; reconnect elsewhere with since
    TRY_AGAIN = 1013  # too slow to keep up; reconnect with since
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404


class ErrorCode:
    """``code`` values of ``error`` frames."""

    BAD_FRAME = "bad_frame"  # not decodable, or not an object with a string type
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"  # a field is missing, of the wrong type or out of bounds
    RATE_LIMITED = "rate_limited"
    CONFLICT = "conflict"  # the id is already used by another kind of event
    UNAVAILABLE = "unavailable"  # the event could not be stored; retry with the same id
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"


MAX_CLIENT_ID = 64
MAX_BODY = 4000


class FrameError(Exception):
    def __init__(self, code: str, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    binary: bool
    encode: Callable[[Any], str | bytes]
    decode: Callable[[str | bytes], Any]


def _json_encode(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _msgpack_decode(data: str | bytes) -> Any:
    if isinstance(data, str):
        raise ValueError("menteo.v1.msgpack takes binary frames")
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def _msgpack_encode(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


JSON = Codec(SUBPROTOCOL_JSON, False, _json_encode, orjson.loads)
MSGPACK = Codec(SUBPROTOCOL_MSGPACK, True, _msgpack_encode, _msgpack_decode)
CODECS = {c.name: c for c in (JSON, MSGPACK)}


def choose_codec(offered: list[str]) -> Codec | None:
    """The codec for the subprotocols a client offers: the first we speak, JSON when none."""
    for name in offered:
        if name in CODECS:
            return CODECS[name]
    return None if offered else JSON


def decode_frame(codec: Codec, data: str | bytes) -> dict[str, Any]:
    try:
        frame = codec.decode(data)
    except Exception as exc:  # orjson, msgpack and our own ValueError
        raise FrameError(ErrorCode.BAD_FRAME, f"cannot decode frame: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError(ErrorCode.BAD_FRAME, "a frame is an object with a string 'type'")
    return frame


def frame_id(frame: dict[str, Any]) -> str | None:
    value = frame.get("id")
    return value if isinstance(value, str) else None


# A code point in U+D800..U+DFFF is half of a UTF-16 pair on its own: no encoder we use
# (orjson, msgpack, PostgreSQL, SQLite) accepts it, so one in a frame would fail every
# reader's encode, not just the sender's.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Unicode's control characters (Cc): C0, DEL and C1. Refused in ids and names, which are
# single-line labels (a newline in a user id would split Redis presence entries).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_lone_surrogate(value: str) -> bool:
    return not value.isascii() and _LONE_SURROGATE.search(value) is not None


def has_nul(value: str) -> bool:
    """Text nowhere we store or encode: NUL (PostgreSQL refuses it) or a lone surrogate
    (no encoder takes it). Refused on every backend."""
    return "\x00" in value or has_lone_surrogate(value)


def has_control(value: str) -> bool:
    """A control character (NUL, newline, DEL, C1...) or a lone surrogate: not an id or
    a name."""
    return _CONTROL.search(value) is not None or has_lone_surrogate(value)


def client_id(frame: dict[str, Any]) -> str:
    value = frame.get("id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID or has_control(value):
        raise FrameError(
            ErrorCode.INVALID,
            f"'id' must be a string of 1..{MAX_CLIENT_ID} characters, "
            "no control character or lone surrogate",
        )
    return value


def text_field(frame: dict[str, Any], name: str, max_len: int, *, min_len: int = 1) -> str:
    value = frame.get(name)
    if not isinstance(value, str) or not min_len <= len(value) <= max_len or has_nul(value):
        raise FrameError(
            ErrorCode.INVALID,
            f"'{name}' must be a string of {min_len}..{max_len} characters, "
            "no NUL or lone surrogate",
            frame_id(frame),
        )
    return value


def chat_body(frame: dict[str, Any], cid: str | None) -> str:
    """A chat message's body: 1..MAX_BODY characters, no NUL or lone surrogate, not only
    white space (``chat.send`` and the backend's system messages alike)."""
    body = text_field(frame, "body", MAX_BODY)
    if not body.strip():
        raise FrameError(ErrorCode.INVALID, "'body' must not be blank", cid)
    return body


def bool_field(frame: dict[str, Any], name: str) -> bool:
    value = frame.get(name)
    if not isinstance(value, bool):
        raise FrameError(ErrorCode.INVALID, f"'{name}' must be a boolean", frame_id(frame))
    return value


def error_frame(code: str, message: str, frame_id: str | None = None) -> dict[str, Any]:
    return {"type": "error", "id": frame_id, "code": code, "message": message}
