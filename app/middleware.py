"""Pure ASGI middleware: request ids and body size limits (no per-request task overhead)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")
MAX_BODY = 1024 * 1024
MAX_IMPORT_BODY = 64 * 1024 * 1024


def body_limit(path: str) -> int:
    """The largest request body accepted on ``path``, in bytes."""
    return MAX_IMPORT_BODY if path.startswith("/v1/imports") else MAX_BODY


class RequestIdMiddleware:
    """Echo a sane ``X-Request-ID`` (or make one) and keep it in ``scope['state']``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


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
