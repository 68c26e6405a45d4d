"""Idempotency keys: a retried POST replays the first response and does nothing twice.

How one key is honoured — one transaction and a unique constraint, never a read-then-write check:

1. A POST carrying ``Idempotency-Key`` gets a request session joined to an ``OuterTransaction``
   (``app.db``): the services' commits become savepoints and nothing is durable yet.
2. ``IdempotentCall.claim`` (a router dependency, after the token is verified) runs in that
   transaction: on PostgreSQL it takes a transaction-scoped advisory lock on (subject, key)
   *without waiting* — if another request holds it, that request is still running: 409
   ``idempotency_key_in_use``. Then it looks the key up: a stored response with the same request
   hash is replayed (``Idempotent-Replayed: true``); a different hash is 422
   ``idempotency_key_reused``. (SQLite serialises writers, so there a second request simply
   waits for the first and then replays it.)
3. The route runs. ``IdempotencyMiddleware`` holds the response back, ``finish`` inserts the
   record (status, headers, body) in the same transaction and commits: the effect and its stored
   response become durable together, or neither does. Should two requests ever get past the
   lookup together, the primary key (subject, key) refuses the second record and its whole effect
   rolls back (409).

The record holds nothing a database reader could take an identity code from: the stored answer
(a registration's shows the code) is encrypted with the identity keys and bound to (subject, key),
the request hash (over a body that may hold the code) is keyed — a plain hash of a registration
gives its code away to a few thousand guesses, since the rest of the body is in the client's row —
and a key shaped like an identity code is refused (422).

Server errors and retryable conflicts (``Retry-After``) are not stored: their transaction rolls
back, nothing happened, and a retry runs afresh. Records older than ``TTL`` are ignored and purged.
POSTs that only read (search, checkpoint verification) ignore the key: repeating them changes
nothing, and each repetition must be access-logged anew.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable

from sqlalchemy import and_, delete, insert, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import OuterTransaction
from app.domain.personal_id import IDENTITY_CODE
from app.errors import Conflict, ServiceUnavailable, SiltaError, Unprocessable, ValidationFailed
from app.models.common import utcnow
from app.models.integration import IdempotencyRecord
from app.services.vault import VAULT, Vault

HEADER = "idempotency-key"
STATE = "silta.idempotency"
TTL = dt.timedelta(hours=24)
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
READ_ONLY_POSTS = frozenset({"/v1/clients/search", "/v1/audit/checkpoints/verify"})
REPLAYED_HEADERS = ("content-type", "location", "etag")


class KeyInUse(Conflict):
    code, title = "idempotency_key_in_use", "A request with this Idempotency-Key is still running"


class KeyReused(Unprocessable):
    code, title = "idempotency_key_reused", "This Idempotency-Key was used with a different request"


class Replay(SiltaError):
    """Not an error: the stored first response, to be sent again as it was."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__("replay")
        self.record = record


def canonical_request(method: str, path: str, query: str, body: bytes) -> bytes:
    """What makes two requests 'the same': method, path, query and the JSON body (key order aside)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return f"{method}\n{path}\n{query}\n".encode() + canonical


def request_hash(vault: Vault, method: str, path: str, query: str, body: bytes) -> str:
    return vault.digest("idempotency", canonical_request(method, path, query, body))


def legacy_request_hash(method: str, path: str, query: str, body: bytes) -> str:
    """The unkeyed hash of records stored by releases before keyed ones (gone 24 hours after the upgrade)."""
    return hashlib.sha256(canonical_request(method, path, query, body)).hexdigest()


def wanted(scope: Scope) -> str | None:
    """The request's Idempotency-Key, if it is a POST that honours one (422 for a malformed key)."""
    if scope.get("method") != "POST" or scope["path"] in READ_ONLY_POSTS or not scope["path"].startswith("/v1/"):
        return None
    raw = dict(scope["headers"]).get(HEADER.encode())
    if raw is None:
        return None
    key = raw.decode("latin-1")
    if not KEY_PATTERN.match(key):
        raise ValidationFailed("Idempotency-Key must be 1-255 printable ASCII characters without spaces")
    if IDENTITY_CODE.search(key):
        raise ValidationFailed("Idempotency-Key must not hold an identity code")
    return key


class IdempotentCall:
    """One POST with a key: its outer transaction, from the session's start to the stored response."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], key: str) -> None:
        self.outer = OuterTransaction(factory)
        self.vault: Vault = factory.kw["info"][VAULT]
        self.key = key
        self.subject: str | None = None
        self.hash: str | None = None
        self.path = ""

    async def begin(self) -> AsyncSession:
        return await self.outer.begin()

    @property
    def claimed(self) -> bool:
        return self.hash is not None

    async def claim(self, subject: str, method: str, path: str, query: str, body: bytes) -> None:
        """Replay, refuse, or let the request run (then ``finish`` stores its response)."""
        connection = self.outer.connection
        assert connection is not None, "begin() first"
        if connection.dialect.name == "postgresql":
            lock = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))")
            if not (await connection.execute(lock, {"name": f"idempotency\n{subject}\n{self.key}"})).scalar():
                raise KeyInUse()
        mine = and_(col(IdempotencyRecord.subject) == subject, col(IdempotencyRecord.key) == self.key)
        await connection.execute(delete(IdempotencyRecord).where(mine, col(IdempotencyRecord.created_at) < _expiry()))
        row = (await connection.execute(select(IdempotencyRecord).where(mine))).first()
        digest = request_hash(self.vault, method, path, query, body)
        if row is not None:
            record = IdempotencyRecord.model_validate(row._mapping)
            if record.request_hash == digest:
                record.body = self.vault.open_bytes(record.body, _context(subject, self.key))
            elif record.request_hash != legacy_request_hash(method, path, query, body):
                raise KeyReused()
            raise Replay(record)  # a legacy record (plain hash) holds its body as it was sent
        self.subject, self.hash, self.path = subject, digest, path

    async def finish(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> SiltaError | None:
        """Store the response with the effect and commit; an error to answer instead if that failed."""
        connection = self.outer.connection
        if not self.claimed or connection is None:
            return None
        kept = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        if status >= 500 or "retry-after" in kept:
            await self.outer.rollback()
            return None
        record = {
            "subject": self.subject,
            "key": self.key,
            "method": "POST",
            "path": self.path[:500],
            "request_hash": self.hash,
            "status_code": status,
            "headers": {name: kept[name] for name in REPLAYED_HEADERS if name in kept},
            "body": self.vault.seal_bytes(body, _context(self.subject or "", self.key)),
            "created_at": utcnow(),
        }
        try:
            await self.outer.close_session()
            await connection.execute(insert(IdempotencyRecord).values(record))
            await self.outer.commit()
        except IntegrityError:
            await self.outer.rollback()
            return KeyInUse("another request with this Idempotency-Key completed first; retry to get its response")
        return None

    async def close(self) -> None:
        """Roll back whatever was not committed by ``finish`` (errors, replays, refusals)."""
        await self.outer.rollback()


def _context(subject: str, key: str) -> bytes:
    """What a stored answer is bound to: it opens only on the row of its own subject and key."""
    return f"idempotency\n{subject}\n{key}".encode()


def _expiry() -> dt.datetime:
    return utcnow() - TTL


async def purge_expired(session: AsyncSession) -> int:
    """Forget records older than the 24 h window; returns how many."""
    result = await session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < _expiry()))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


class IdempotencyMiddleware:
    """Holds back the response of a claimed idempotent POST until it is stored with its effect."""

    def __init__(self, app: ASGIApp, on_error: Callable[[SiltaError], ASGIApp]) -> None:
        self.app = app
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        start: Message | None = None
        parts: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            call: IdempotentCall | None = state.get(STATE)
            if call is None or not call.claimed:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = message
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            assert start is not None
            body = b"".join(parts)
            try:
                failure = await call.finish(start["status"], start.get("headers", []), body)
            except SQLAlchemyError:
                await call.close()
                failure = ServiceUnavailable()
            if failure is not None:
                await self.on_error(failure)(scope, receive, send)
                return
            await send(start)
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, receive, hold)
        finally:
            call = state.pop(STATE, None)
            if call is not None:
                await call.close()
