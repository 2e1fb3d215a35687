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
from urllib.parse import unquote_plus

import orjson
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter, DefaultFormatter

# A query parameter as it appears in a line: a name up to ``=`` and its value up to the
# next separator. Which ones are tokens is decided on the decoded name, as the app decodes
# it (``?%74oken=`` authenticates like ``?token=``), never on the raw text.
PARAM = re.compile(r"(?P<name>[^\s?&;=\"'\\<>]+)=(?P<value>[^\s&;#\"'\\<>]*)")
# Wherever else a token shows (a header, an exception's text): the Bearer scheme, and the
# shape of every JWT (a base64url JSON header, so it starts "eyJ").
BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
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


def is_token_name(name: str) -> bool:
    """A parameter name that decodes to one naming a token (decoded up to three times: a
    proxy in front may decode once more than the app)."""
    for _ in range(3):
        if "token" in name.lower():
            return True
        decoded = unquote_plus(name)
        if decoded == name:
            return False
        name = decoded
    return "token" in name.lower()


def _param(match: re.Match[str]) -> str:
    name, value = match.group("name", "value")
    if is_token_name(name):
        return f"{name}=***"
    # ``next=/x?token=T``: a value may hold a query of its own (the text is shorter each time)
    return f"{name}={redact(value)}" if "=" in value else match.group(0)


def redact(text: str) -> str:
    """``text`` with the value of every parameter whose name decodes to a token's, every
    Bearer credential and every JWT replaced by ``***``."""
    if "=" in text:
        text = PARAM.sub(_param, text)
    if "eyJ" in text:
        text = JWT.sub("***", text)
    if "earer" in text or "EARER" in text:
        text = BEARER.sub(r"\1***", text)
    return text


def _redacted(value: Any) -> Any:
    """A str redacted; any other object kept unless its text holds a token (a URL object,
    an exception, a dict), then its redacted text instead."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    clean = redact(text)
    return value if clean == text else clean


class RedactTokens(logging.Filter):
    """Redact tokens from a record before any handler formats it: its message, arguments,
    ``extra=`` fields, traceback and stack (see ``redact``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        else:
            record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) for a in record.args)
        elif isinstance(record.args, MutableMapping):
            record.args = {k: _redacted(v) for k, v in record.args.items()}
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: the traceback they print is this one.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """A last pass over the formatted line: whatever a record carried, no token leaves."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingDefaultFormatter(DefaultFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingAccessFormatter(AccessFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
        return redact(orjson.dumps(entry, default=str).decode())


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
        formatters["default"]["()"] = RedactingDefaultFormatter
        formatters["access"]["()"] = RedactingAccessFormatter
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
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
    handler.addFilter(RedactTokens())
    handler.addFilter(WithContext())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # Seven "setup plugin" lines on every start say nothing to an operator.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
