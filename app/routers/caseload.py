"""Caseload against targets: per region, a suggestion, a CSV export, and the national overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from app.deps import AccessLogDep, CurrentCaller, Pagination, SessionDep
from app.models.caseload import CaseloadOverview, CaseloadReport, Suggestion
from app.models.common import Day, Service, WorkerRole
from app.services import caseload as service

router = APIRouter(tags=["caseload"])
RegionCode = Annotated[str, Path(pattern=r"^\d{2}$")]


@router.get("/regions/{code}/caseload")
async def region_caseload(
    code: RegionCode,
    session: SessionDep,
    caller: CurrentCaller,
    page: Pagination,
    log: AccessLogDep,
    as_of: Day | None = None,
) -> CaseloadReport:
    """Every worker's load against the target, per-role figures, and the queue (paged by limit/cursor)."""
    report = await service.region_caseload(session, caller, code, as_of=as_of, page=page)
    await log.record(item.client_id for item in report.queue)
    return report


@router.get("/regions/{code}/caseload/suggestion")
async def caseload_suggestion(
    code: RegionCode,
    session: SessionDep,
    caller: CurrentCaller,
    role: WorkerRole | None = None,
    service_: Annotated[Service | None, Query(alias="service")] = None,
) -> Suggestion:
    """The eligible active worker with the most room (lowest utilisation, ties broken by id)."""
    return await service.suggestion(session, caller, code, role=role, service=service_)


@router.get("/regions/{code}/caseload/export", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
async def caseload_export(
    code: RegionCode, session: SessionDep, caller: CurrentCaller, as_of: Day | None = None
) -> Response:
    """The per-worker caseload as CSV for spreadsheets."""
    body = await service.caseload_csv(session, caller, code, as_of)
    filename = f"caseload-{code}-{as_of or 'today'}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/caseload/overview")
async def caseload_overview(request: Request, session: SessionDep, caller: CurrentCaller) -> CaseloadOverview:
    """Every region's aggregates side by side; no personal data. At most a minute old (``computed_at``)."""
    return await service.overview(session, caller, request.app.state.overview_snapshot)
