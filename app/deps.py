"""Request wiring: the session, the verified caller, pagination parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.db import session_scope
from app.domain.access import Caller
from app.errors import Unauthorized
from app.security import verify_token
from app.services.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageParams

bearer = HTTPBearer(auto_error=False, description="JWT from the deployment's identity provider")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(request.app.state.sessionmaker):
        yield session


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
    return Caller(
        subject=claims.sub,
        roles=frozenset(claims.roles),
        region=claims.region,
        client_system=claims.client_system,
        request_id=request.scope.get("state", {}).get("request_id"),
    )


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
Pagination = Annotated[PageParams, Depends(page_params)]
