"""Request wiring: the session, the verified caller, rate limits, pagination parameters.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency (or a class) in a worker
thread, a hop per request that showed in the read path's CPU profile (issue 9).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import REQUEST_SESSION
from app.domain.access import PURPOSES, Caller, default_purpose
from app.errors import NotFound, Unauthorized, UnsupportedMediaType, ValidationFailed
from app.middleware import ROUTE
from app.security import TokenClaims, verify_token
from app.services import idempotency, preconditions, rate_limit
from app.services.audit import record_access
from app.services.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageParams

T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="JWT from the deployment's identity provider")


async def get_session(request: Request) -> AsyncSession:
    """The request's session, opened on first use; for an idempotent POST, joined to the transaction
    that stores its response (``IdempotencyMiddleware`` ends that one, ``SessionMiddleware`` any other).
    A GET's statements commit one by one on PostgreSQL (``app.db.read_engine``)."""
    state = request.scope.setdefault("state", {})
    session: AsyncSession | None = state.get(SESSION)
    if session is None:
        key = idempotency.wanted(request.scope)
        if key is None:
            reading = request.scope["method"] in READS
            maker = request.app.state.read_sessionmaker if reading else request.app.state.sessionmaker
            session = state[REQUEST_SESSION] = maker()
        else:
            call = state[idempotency.STATE] = idempotency.IdempotentCall(request.app.state.sessionmaker, key)
            session = await call.begin()
        state[SESSION] = session
    return session


READS = frozenset({"GET", "HEAD"})  # methods that change nothing but the access log
SESSION = "silta.request_session"  # scope["state"]: what get_session returned (the same all request long)
CALLER = "silta.caller"  # scope["state"]: the verified caller, once current_caller has run


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """For services that manage their own transactions (imports)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return factory


async def idempotent_connection(request: Request) -> AsyncConnection | None:
    """The connection of the request's idempotent transaction (it has an Idempotency-Key), else None.

    Work that manages its own transactions (imports) runs inside it, so that its effect and the
    stored answer still commit together.
    """
    call = request.scope.get("state", {}).get(idempotency.STATE)
    return call.outer.connection if call is not None else None


JSON_LINES = frozenset({"application/x-ndjson", "application/jsonl"})


async def json_lines_body(request: Request) -> bytes:
    """The raw body of a JSON Lines upload; any other content type is 415."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_LINES:
        raise UnsupportedMediaType(f"send the file as {' or '.join(sorted(JSON_LINES))}")
    return await request.body()


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def current_caller(request: Request) -> Caller:
    """The verified caller; any failure is a plain 401.

    It reads the token itself rather than through ``Depends(bearer)``: FastAPI solves a dependency's
    own dependencies again wherever it is named (five times per request for this one), cache or no
    cache (issue 9). ``route_guard`` names ``bearer`` once, for the OpenAPI security scheme.
    """
    claims = await _verified_claims(request, await bearer(request))
    roles = frozenset(claims.roles)
    purpose = request.headers.get("x-purpose-of-use") or default_purpose(roles)
    if purpose not in PURPOSES:
        raise ValidationFailed(f"X-Purpose-Of-Use must be one of: {', '.join(sorted(PURPOSES))}")
    caller = request.scope.setdefault("state", {})[CALLER] = Caller(
        subject=claims.sub,
        roles=roles,
        region=claims.region,
        client_system=claims.client_system,
        request_id=request.scope.get("state", {}).get("request_id"),
        purpose=purpose,
    )
    return caller


async def _verified_claims(request: Request, credentials: HTTPAuthorizationCredentials | None) -> TokenClaims:
    # Two Authorization headers are ambiguous: a proxy in front may have checked the other one.
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or len(request.headers.getlist("authorization")) > 1
    ):
        raise Unauthorized()
    return await verify_token(credentials.credentials, request.app.state.keys, request.app.state.settings)


async def refuse_unauthenticated(request: Request) -> None:
    """``Unauthorized`` if the matched route needs a token and the request has no valid one.

    For errors raised before dependencies run: FastAPI parses a JSON body before it checks the
    token, and an unauthenticated caller must get the same 401 whatever body it sent.
    """
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is not None and _names_caller(dependant):
        await _verified_claims(request, await bearer(request))


def _names_caller(dependant: Any) -> bool:
    """The route's own dependencies (the router's ``route_guard`` is not among them) ask for the caller."""
    return any(sub.call is current_caller or _names_caller(sub) for sub in dependant.dependencies)


async def route_guard(
    request: Request,
    caller: Annotated[Caller, Depends(current_caller)],
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """What every ``/v1`` route checks once the caller is known, before its session begins: the body's
    media type (a body of the wrong type is refused before it spends the caller's rate limit), then the
    rate limit (in a session of its own, committed before the request's transaction starts: on SQLite
    an idempotent request's transaction would hold the write lock), then an Idempotency-Key (replay or
    refuse a POST whose key was seen before). One dependency rather than three: FastAPI's cost per
    request grows with the number of dependencies (issue 9)."""
    await media_type_guard(request)
    await rate_limit_guard(request, caller)
    if idempotency.wanted(request.scope) is not None:
        await get_session(request)  # begins the idempotent transaction, in which the key is claimed
        call: idempotency.IdempotentCall = request.scope["state"][idempotency.STATE]
        body = await request.body()
        await call.claim(caller.subject, request.method, request.url.path, request.url.query, body)


async def rate_limit_guard(request: Request, caller: Caller) -> None:
    """Spend one request of the caller's allowance on an expensive endpoint (429 when none is left)."""
    endpoint_class = rate_limit.LIMITED.get((request.method, request.scope.get("state", {}).get(ROUTE, "")))
    if endpoint_class is None:
        return
    rate = request.app.state.settings.rate_limit(endpoint_class)
    if rate is None:
        return
    async with request.app.state.sessionmaker() as session:
        now = request.app.state.rate_limit_clock()
        await rate_limit.admit(session, subject=caller.subject, endpoint_class=endpoint_class, rate=rate, now=now)


JSON = "application/json"


def body_media_types(route: object) -> frozenset[str]:
    """The media types a route's request body may have: those its OpenAPI request body declares
    (``openapi_extra``, e.g. JSON Lines for imports), else its body parameter's; empty without a body."""
    extra = getattr(route, "openapi_extra", None) or {}
    declared = (extra.get("requestBody") or {}).get("content")
    if declared:
        return frozenset(declared)
    body = getattr(route, "body_field", None)
    return frozenset({getattr(body.field_info, "media_type", JSON)}) if body is not None else frozenset()


def _takes(accepted: frozenset[str], content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    is_json = media_type == JSON or (media_type.startswith("application/") and media_type.endswith("+json"))
    return media_type in accepted or (JSON in accepted and is_json)


def _has_body(request: Request) -> bool:
    """A non-zero Content-Length or a chunked body (BodyLimitMiddleware has refused a non-numeric length)."""
    length = request.headers.get("content-length", "0")
    return length.lstrip("0") != "" or "transfer-encoding" in request.headers


async def media_type_guard(request: Request) -> None:
    """415 for a body whose Content-Type the route does not take (JSON, charset allowed, unless the route
    declares others); a request without a body (a bare POST like a confirmation) needs none."""
    accepted = body_media_types(request.scope.get("route"))
    if accepted and _has_body(request) and not _takes(accepted, request.headers.get("content-type", "")):
        raise UnsupportedMediaType(f"send the body as {' or '.join(sorted(accepted))}")


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


class Conditional:
    """If-Match on a state-changing call, and the ETag of what it answers (see app.services.preconditions)."""

    def __init__(self, request: Request, session: AsyncSession) -> None:
        self.session = session
        self.if_match = request.headers.get("if-match")
        self.required = request.app.state.settings.require_if_match

    async def check(
        self, lock: Callable[[AsyncSession], Awaitable[Any]], current: Callable[[], Awaitable[BaseModel]]
    ) -> None:
        """412/428 unless If-Match names the current representation (checked under ``lock``)."""
        await preconditions.check(
            self.session, if_match=self.if_match, required=self.required, lock=lock, current=current
        )

    async def apply(
        self,
        lock: Callable[[AsyncSession], Awaitable[Any]],
        current: Callable[[], Awaitable[BaseModel]],
        write: Callable[[], Awaitable[T]],
        response: Response | None = None,
    ) -> T:
        """A conditional change: check If-Match, ``write``, then answer the resource's new ETag."""
        await self.check(lock, current)
        result = await write()
        if response is not None:
            await self.tag(response, current)
        return result

    async def tag(self, response: Response, current: Callable[[], Awaitable[BaseModel]]) -> None:
        """Answer with the ETag of the resource as it is now (none if the change took it out of sight)."""
        with contextlib.suppress(NotFound):
            self.tag_with(response, await current())

    @staticmethod
    def tag_with(response: Response, representation: BaseModel) -> None:
        response.headers["ETag"] = preconditions.etag_of(representation)


async def conditional(request: Request, session: Annotated[AsyncSession, Depends(get_session)]) -> Conditional:
    return Conditional(request, session)


class AccessLog:
    """What a route that answers with personal data calls before it returns: who saw which clients.

    It takes the request's session and caller from the request (``get_session``, ``current_caller``)
    instead of depending on them: each dependency named costs FastAPI a solve per request (issue 9).
    """

    def __init__(self, request: Request) -> None:
        self.request = request

    async def record(self, client_ids: Iterable[uuid.UUID]) -> None:
        state = self.request.scope["state"]
        await record_access(
            await get_session(self.request),
            state[CALLER],
            method=self.request.method,
            endpoint=state.get(ROUTE, "unmatched"),  # the template, never ids
            client_ids=client_ids,
            enabled=self.request.app.state.settings.audit_access_log,
        )


async def get_access_log(request: Request) -> AccessLog:
    return AccessLog(request)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
Pagination = Annotated[PageParams, Depends(page_params)]
AccessLogDep = Annotated[AccessLog, Depends(get_access_log)]
ConditionalDep = Annotated[Conditional, Depends(conditional)]
SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
IdempotentConnection = Annotated[AsyncConnection | None, Depends(idempotent_connection)]
JsonLinesBody = Annotated[bytes, Depends(json_lines_body)]
