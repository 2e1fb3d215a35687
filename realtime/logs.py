"""Logging that never carries a token: servers log request lines, and ours hold ``?token=``.

Lines come out as text (the default, for a terminal) or as one JSON object per line
(``MENTEO_LOG_FORMAT=json``, for a log pipeline). Either way every line written while a
request or socket is served carries that request's id: the app binds it once per
connection in a context variable, which every task the connection starts inherits, so
nothing is added per frame.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from uvicorn.config import LOGGING_CONFIG

TOKEN = re.compile(r"(token=)[^&\s\"']+")
# An X-Request-ID from a proxy is kept when it is short and plain (it goes into every line).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# The request or socket being served, as the fields its lines carry.
CONTEXT: ContextVar[dict[str, str] | None] = ContextVar("menteo_log_context", default=None)

access = logging.getLogger("menteo.access")
# uvicorn's logger for the opening lines; ``--log-level`` sets its level.
opening = logging.getLogger("uvicorn.error")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
    "log_context",
    "ctx",
}


def redact(text: str) -> str:
    return TOKEN.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    """Replace every ``token=…`` in a record's message and arguments with ``token=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


class WithContext(logging.Filter):
    """Copy the current request's fields onto the record (read where the line is logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = CONTEXT.get()
        record.log_context = context
        record.ctx = f"[{context['request_id']}] " if context else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the request's fields,
    uvicorn's access fields and any ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "log_context", None)
        if context:
            entry.update(context)
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            # uvicorn's access line (client, method, target, HTTP version, status): as fields
            entry.update(client=args[0], method=args[1], target=args[2], status=args[4])
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            # A traceback can quote a URL; it gets the same redaction as the message.
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        return orjson.dumps(entry, default=str).decode()


def bind(scope: MutableMapping[str, Any]) -> None:
    """Give the request or socket in ``scope`` an id for all its log lines: the proxy's
    ``X-Request-ID`` when sane, otherwise a short random one. The context variable is set
    in the connection's own task, so nothing leaks to other connections."""
    request_id = ""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(candidate):
                request_id = candidate
            break
    CONTEXT.set({"request_id": request_id or secrets.token_hex(4), "path": scope["path"]})


def ended(scope: MutableMapping[str, Any], started: float) -> None:
    """The closing line of a socket or event stream (its opening line is uvicorn's)."""
    if not opening.isEnabledFor(logging.INFO):
        return  # --log-level warning turns the opening lines off: the closing ones too
    kind = "WebSocket" if scope["type"] == "websocket" else scope.get("method", "GET")
    client = scope.get("client") or ("?", 0)
    access.info(
        '%s:%d - "%s %s" ended after %.2fs',
        client[0],
        client[1],
        kind,
        scope["path"],  # no query string: the path names the room, the query holds the token
        time.monotonic() - started,
    )


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(ctx)s%(message)s"


def log_config(fmt: str = "text") -> dict[str, Any]:
    """Uvicorn's logging, with the filters on every handler (ours log through them too)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactTokens}, "context": {"()": WithContext}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact", "context"]
    if fmt == "json":
        config["formatters"] = {"default": {"()": JsonFormatter}, "access": {"()": JsonFormatter}}
    else:
        formatters = config["formatters"]
        formatters["default"]["fmt"] = "%(levelprefix)s %(ctx)s%(message)s"
        formatters["access"]["fmt"] = (
            '%(levelprefix)s %(ctx)s%(client_addr)s - "%(request_line)s" %(status_code)s'
        )
    config["loggers"]["menteo"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def configure(fmt: str) -> None:
    """The process's own logging, before uvicorn's: the CLI's commands, and the libraries
    that log to the root logger (Alembic), in the same format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactTokens())
    handler.addFilter(WithContext())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # Seven "setup plugin" lines on every start say nothing to an operator.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
