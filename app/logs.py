"""Application logs: one JSON object per line, each with its request id, and never an identity code.

``configure`` is called once at startup (``silta serve`` and the ASGI app ``app.main:app``); it
sends every logger, uvicorn's included, to one JSON handler on stderr. Uvicorn's own access log
stays off: ``app.middleware.ObserveMiddleware`` writes the access line, with the route template
instead of the raw URL (which may carry ids in its path and anything in its query).

Identity codes are kept out of logs by what is logged (templates, not URLs; exception types, not
their messages), and the formatter masks anything shaped like one in the finished line as a last
guard, tracebacks included. The test suite checks every record before that mask (``tests/log_guard.py``).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from app.domain.personal_id import IDENTITY_CODE

current_request_id: ContextVar[str | None] = ContextVar("silta_request_id", default=None)
MASK = "[identity code]"
QUIET = ("httpx", "httpcore", "asyncio")  # their INFO lines name URLs and connections, not our work


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request it was logged in (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


class JsonLines(JsonFormatter):
    """``timestamp`` (RFC 3339, UTC), ``level``, ``logger``, ``message``, ``request_id`` and any extras."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's copy of the message with ANSI colours
            json_ensure_ascii=False,
            **kwargs,
        )

    def format(self, record: logging.LogRecord) -> str:
        return IDENTITY_CODE.sub(MASK, super().format(record))


def handler(stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing JSON lines to ``stream`` (default stderr)."""
    json_handler = logging.StreamHandler(stream or sys.stderr)
    json_handler.setFormatter(JsonLines())
    json_handler.addFilter(RequestIdFilter())
    return json_handler


def configure(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Route all logging through one JSON handler; safe to call again (it replaces the handler)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(stream))
    root.setLevel(level)
    # A record need not learn its thread, process or source line: no line shows them, and looking
    # them up was a fifth of the access line's cost, on every request (the logging HOWTO's
    # "Optimization" section; issue 9).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    for name in ("uvicorn", "uvicorn.error"):
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
