"""Pure ASGI middleware: request ids, metrics and the access line, body size limits (no per-request task overhead)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import IDENTITY_CODE, current_request_id
from app.metrics import UNMATCHED, Metrics

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")
MAX_BODY = 1024 * 1024
MAX_IMPORT_BODY = 64 * 1024 * 1024
ROUTE = "route_template"  # where in scope["state"] the request's route template is kept
access_log = logging.getLogger("silta.access")


def body_limit(path: str) -> int:
    """The largest request body accepted on ``path``, in bytes."""
    return MAX_IMPORT_BODY if path.startswith("/v1/imports") else MAX_BODY


class RequestIdMiddleware:
    """Echo a sane ``X-Request-ID`` (or make one) and keep it in ``scope['state']``.

    A given id holding something shaped like an identity code is replaced too: the id goes into every
    log line of the request and into the audit tables, which must never hold a code in the clear.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        sane = REQUEST_ID.match(given) and not IDENTITY_CODE.search(given)
        request_id = given if sane else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        token = current_request_id.set(request_id)  # every log line of this request carries it
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)


class RouteTable:
    """Finds the route template of a request (``/v1/clients/{client_id}``) without routing it."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], frozenset[str] | None]] = []

    def add(self, routes: Iterable[object], prefix: str = "") -> None:
        for route in routes:
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if isinstance(path, str):
                self.routes.append((prefix + path, compile_path(prefix + path)[0], frozenset(methods or ()) or None))

    def template(self, method: str, path: str) -> str:
        """As the router decides: the first route matching path and method, else the first matching the
        path (it answers 405), else ``unmatched``."""
        partial = None
        for template, regex, methods in self.routes:
            if regex.match(path):
                if methods is None or method in methods:
                    return template
                partial = partial or template
        return partial or UNMATCHED


class ObserveMiddleware:
    """Times each request, counts it under its route template and writes its access line.

    Runs inside ``RequestIdMiddleware`` (so the line has the request id) and outside the body
    limit (so refused requests are counted too). The template is kept in ``scope["state"]`` for
    the rate limiter.
    """

    def __init__(self, app: ASGIApp, routes: RouteTable, metrics: Metrics) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self.routes.template(scope["method"], scope["path"])
        scope.setdefault("state", {})[ROUTE] = route
        status = 500  # what the server answers if the app fails before it starts an answer

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["method"], route, status, seconds)
            fields = {"method": scope["method"][:10], "route": route, "status": status}
            access_log.info("request", extra={**fields, "duration_ms": round(seconds * 1000, 2)})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` past the limit: an HTTPException, so that FastAPI, reading the body
    of a request without (or with a false) Content-Length, passes it on instead of answering 400."""

    def __init__(self) -> None:
        super().__init__(413)


class BodyLimitMiddleware:
    """Refuse bodies over 1 MiB (imports: 64 MiB) before the app reads them."""

    def __init__(self, app: ASGIApp, on_too_large: Any) -> None:
        self.app = app
        self.on_too_large = on_too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self.on_too_large(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self.on_too_large(scope, receive, send)
