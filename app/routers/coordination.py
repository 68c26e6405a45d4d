"""Coordination requests between regions."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.deps import AccessLogDep, Conditional, ConditionalDep, CurrentCaller, Pagination, SessionDep
from app.models.common import PageOut, RequestStatus
from app.models.request import CoordinationRequest, CoordinationRequestCreate, CoordinationRequestPublic, RequestAnswer
from app.services import answers, preconditions
from app.services import requests as service

router = APIRouter(tags=["coordination"])
Region = Annotated[str | None, Query(pattern=r"^\d{2}$")]


@router.post("/coordination-requests", status_code=201)
async def create_request(
    data: CoordinationRequestCreate, session: SessionDep, caller: CurrentCaller
) -> CoordinationRequestPublic:
    """Ask another region to act about a client the caller's region holds a responsibility for."""
    return await service.create_request(session, caller, data)


@router.get("/coordination-requests")
async def list_requests(
    session: SessionDep,
    caller: CurrentCaller,
    page: Pagination,
    log: AccessLogDep,
    to_region: Region = None,
    from_region: Region = None,
    status: RequestStatus | None = None,
    overdue: bool | None = None,
) -> PageOut[CoordinationRequestPublic]:
    """Requests the caller's region asked or was asked, soonest due first."""
    result = await service.list_requests(
        session, caller, to_region=to_region, from_region=from_region, status=status, overdue=overdue, page=page
    )
    await log.record(request.client_id for request in result.items)
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.get("/coordination-requests/{request_id}")
async def get_request(
    request_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, log: AccessLogDep, response: Response
) -> CoordinationRequestPublic:
    """One request; the ETag is what ``If-Match`` on its answers expects."""
    request = await service.get_request(session, caller, request_id)
    await log.record([request.client_id])
    Conditional.tag_with(response, request)
    return request


async def _answer(
    request_id: uuid.UUID,
    answer: Literal["accept", "decline", "cancel"],
    data: RequestAnswer,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> CoordinationRequestPublic:
    current = partial(service.get_request, session, caller, request_id)
    return await cond.apply(
        preconditions.client_row_of(CoordinationRequest, request_id),
        current,
        lambda: answers.answer_request(session, caller, request_id, answer, data),
        response,
    )


@router.post("/coordination-requests/{request_id}/accept")
async def accept_request(
    request_id: uuid.UUID,
    data: RequestAnswer,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> CoordinationRequestPublic:
    """The receiving region's coordinator accepts; an organising transfer is carried out."""
    return await _answer(request_id, "accept", data, session, caller, cond, response)


@router.post("/coordination-requests/{request_id}/decline")
async def decline_request(
    request_id: uuid.UUID,
    data: RequestAnswer,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> CoordinationRequestPublic:
    """The receiving region's coordinator declines; nothing else changes."""
    return await _answer(request_id, "decline", data, session, caller, cond, response)


@router.post("/coordination-requests/{request_id}/cancel")
async def cancel_request(
    request_id: uuid.UUID,
    data: RequestAnswer,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> CoordinationRequestPublic:
    """The asking region withdraws its request."""
    return await _answer(request_id, "cancel", data, session, caller, cond, response)
