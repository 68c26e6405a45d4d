"""Compliance with the two-region rule."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import AccessLogDep, CurrentCaller, Pagination, SessionDep
from app.models.assignment import CompliancePublic, GapPublic
from app.models.common import Day, PageOut
from app.services import compliance as service
from app.services.clock import today

router = APIRouter(tags=["compliance"])


@router.get("/clients/{client_id}/compliance")
async def get_compliance(
    client_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, log: AccessLogDep, as_of: Day | None = None
) -> CompliancePublic:
    """Whether the client has both named workers it needs, and what is missing since when."""
    answer = await service.client_compliance(session, caller, client_id, as_of=as_of or today())
    await log.record([client_id])
    return answer


@router.get("/compliance/gaps")
async def list_gaps(
    session: SessionDep,
    caller: CurrentCaller,
    page: Pagination,
    log: AccessLogDep,
    region: Annotated[str | None, Query(pattern=r"^\d{2}$")] = None,
    overdue: bool | None = None,
) -> PageOut[GapPublic]:
    """Open gaps of a region, earliest due first."""
    result = await service.list_gaps(session, caller, region=region, overdue=overdue, page=page)
    await log.record(gap.client_id for gap in result.items)
    return PageOut(items=result.items, next_cursor=result.next_cursor)
