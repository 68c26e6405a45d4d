"""Liveness, readiness and metrics (no token needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.metrics import CONTENT_TYPE
from app.migrate import head_revision

router = APIRouter(tags=["operations"])
TEXT = {"type": "string"}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database unreachable or not migrated"}})
async def readyz(request: Request) -> JSONResponse:
    """The database is reachable and migrated to the code's head revision."""
    try:
        async with request.app.state.engine.connect() as connection:
            current = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "not migrated", "revision": current, "head": head},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "revision": current})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": TEXT}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latencies per route and status class, open and overdue gaps per region."""
    body = await request.app.state.metrics.scrape(request.app.state.sessionmaker)
    return Response(body, media_type=CONTENT_TYPE)
