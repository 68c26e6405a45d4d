"""Named-worker assignments."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.deps import AccessLogDep, CurrentCaller, Pagination, SessionDep
from app.models.assignment import AssignmentCreate, AssignmentEnd, AssignmentPublic
from app.models.common import Day, PageOut
from app.services import assignments as service

router = APIRouter(tags=["assignments"])


@router.post("/clients/{client_id}/assignments", status_code=201)
async def create_assignment(
    client_id: uuid.UUID, data: AssignmentCreate, session: SessionDep, caller: CurrentCaller
) -> AssignmentPublic:
    """Name a worker for the responsibility the caller's region holds."""
    return await service.create_assignment(session, caller, client_id, data)


@router.get("/clients/{client_id}/assignments")
async def list_assignments(
    client_id: uuid.UUID,
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    page: Pagination,
    as_of: Day | None = None,
) -> PageOut[AssignmentPublic]:
    """The client's assignments (those in force on ``as_of`` when given), oldest first."""
    result = await service.list_assignments(session, caller, client_id, as_of=as_of, page=page)
    await log.record([client_id])
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.post("/assignments/{assignment_id}/end")
async def end_assignment(
    assignment_id: uuid.UUID, data: AssignmentEnd, session: SessionDep, caller: CurrentCaller
) -> AssignmentPublic:
    """End an assignment; a gap opens for the responsibility."""
    return await service.end_assignment(session, caller, assignment_id, data)
