"""Rendering every failure as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from app.deps import refuse_unauthenticated
from app.errors import SiltaError, Unauthorized
from app.services.idempotency import Replay

log = logging.getLogger("silta")
HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def problem(status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:silta:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
    await problem(413, "payload_too_large", "Request body too large")(scope, receive, send)


def _loc(loc: tuple[Any, ...]) -> list[Any]:
    return [part for part in loc if part not in {"body"}] or list(loc)


def of(exc: SiltaError) -> JSONResponse:
    """The problem response for one of our errors."""
    response = problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)
    response.headers.update(exc.headers)
    return response


async def _silta_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SiltaError)
    return of(exc)


async def _replay(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)
    record = exc.record
    headers = {**record.headers, "Idempotent-Replayed": "true"}
    return Response(record.body, status_code=record.status_code, headers=headers)


async def _unauthenticated(request: Request) -> JSONResponse | None:
    """The 401 owed to a caller without a valid token whose body failed before the token was checked."""
    try:
        await refuse_unauthenticated(request)
    except Unauthorized as exc:
        return of(exc)
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if unauthenticated := await _unauthenticated(request):
        return unauthenticated
    errors = [{"loc": _loc(tuple(error.get("loc", ()))), "msg": error.get("msg", "")} for error in exc.errors()]
    return problem(422, "validation_error", "The request is not valid", "see errors", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and (unauthenticated := await _unauthenticated(request)):
        return unauthenticated  # a body FastAPI could not parse at all (e.g. nested too deep)
    code, title = HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    response = problem(exc.status_code, code, title)
    if exc.headers:
        response.headers.update({k: v for k, v in exc.headers.items() if k.lower() == "allow"})
    return response


async def _integrity_error(_: Request, exc: Exception) -> JSONResponse:
    log.warning("constraint violation not mapped by a service: %s", type(exc).__name__)
    return problem(409, "conflict", "The change conflicts with the current state")


async def _unstorable_value(_: Request, exc: Exception) -> JSONResponse:
    log.warning("value refused by the database: %s", type(exc).__name__)
    return problem(422, "invalid_value", "A value cannot be stored", "a value is out of range or not storable")


RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock detected: the client may simply retry


async def _database_down(_: Request, exc: Exception) -> JSONResponse:
    original = getattr(exc, "orig", None)
    if (getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)) in RETRYABLE:
        log.warning("concurrent update refused by the database: %s", type(exc).__name__)
        response = problem(409, "concurrent_update", "A concurrent change got in the way; retry the request")
        response.headers["Retry-After"] = "1"
        return response
    log.error("database unavailable: %s", type(exc).__name__)
    return problem(503, "unavailable", "Service temporarily unavailable")


async def _pool_exhausted(_: Request, exc: Exception) -> JSONResponse:
    log.error("no database connection free within SILTA_DB_POOL_TIMEOUT: %s", type(exc).__name__)
    response = problem(503, "unavailable", "Service temporarily unavailable")
    response.headers["Retry-After"] = "1"
    return response


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return problem(500, "internal_error", "Internal error")


def install(app: FastAPI) -> None:
    """The one place that maps exceptions to HTTP."""
    app.add_exception_handler(Replay, _replay)
    app.add_exception_handler(SiltaError, _silta_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _unstorable_value)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(DBAPIError, _database_down)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_exception_handler(Exception, _unexpected)
