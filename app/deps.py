"""Request wiring: the session, the verified caller, pagination parameters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import session_scope
from app.domain.access import PURPOSES, Caller, default_purpose
from app.errors import Unauthorized, UnsupportedMediaType, ValidationFailed
from app.security import verify_token
from app.services.audit import record_access
from app.services.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageParams

bearer = HTTPBearer(auto_error=False, description="JWT from the deployment's identity provider")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(request.app.state.sessionmaker):
        yield session


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """For services that manage their own transactions (imports)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return factory


JSON_LINES = frozenset({"application/x-ndjson", "application/jsonl"})


async def json_lines_body(request: Request) -> bytes:
    """The raw body of a JSON Lines upload; any other content type is 415."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_LINES:
        raise UnsupportedMediaType(f"send the file as {' or '.join(sorted(JSON_LINES))}")
    return await request.body()


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def current_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The verified caller; any failure is a plain 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    claims = await verify_token(credentials.credentials, request.app.state.keys, request.app.state.settings)
    roles = frozenset(claims.roles)
    purpose = request.headers.get("x-purpose-of-use") or default_purpose(roles)
    if purpose not in PURPOSES:
        raise ValidationFailed(f"X-Purpose-Of-Use must be one of: {', '.join(sorted(PURPOSES))}")
    return Caller(
        subject=claims.sub,
        roles=roles,
        region=claims.region,
        client_system=claims.client_system,
        request_id=request.scope.get("state", {}).get("request_id"),
        purpose=purpose,
    )


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


class AccessLog:
    """What a route that answers with personal data calls before it returns: who saw which clients."""

    def __init__(self, request: Request, session: AsyncSession, caller: Caller) -> None:
        self.request, self.session, self.caller = request, session, caller

    async def record(self, client_ids: Iterable[uuid.UUID]) -> None:
        route = self.request.scope.get("route")
        await record_access(
            self.session,
            self.caller,
            method=self.request.method,
            endpoint=_route_path(route, self.request.url.path),
            client_ids=client_ids,
            enabled=self.request.app.state.settings.audit_access_log,
        )


def _route_path(route: object, url_path: str) -> str:
    """The path template of the route (``/v1/clients/{client_id}``), never the ids themselves."""
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return url_path
    return template if url_path.startswith(template.split("{")[0]) else "/v1" + template


def get_access_log(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    caller: Annotated[Caller, Depends(current_caller)],
) -> AccessLog:
    return AccessLog(request, session, caller)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
Pagination = Annotated[PageParams, Depends(page_params)]
AccessLogDep = Annotated[AccessLog, Depends(get_access_log)]
SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
JsonLinesBody = Annotated[bytes, Depends(json_lines_body)]
