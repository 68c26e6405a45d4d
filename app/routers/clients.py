"""Clients: registration, reads, search, updates, moves, transfers, history."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.deps import AccessLogDep, Conditional, ConditionalDep, CurrentCaller, Pagination, SessionDep, SettingsDep
from app.models.client import (
    ClientCreate,
    ClientEnd,
    ClientHistory,
    ClientPublic,
    ClientSearch,
    ClientSummary,
    ClientUpdate,
    MoveCreate,
    OrganisingTransferCreate,
    ResponsibilityPublic,
)
from app.models.common import Day, Moment, PageOut
from app.models.request import CoordinationRequestPublic
from app.services import clients as service
from app.services import history, preconditions, residence
from app.services.clock import today

router = APIRouter(tags=["clients"])


@router.post("/clients", status_code=201)
async def create_client(
    data: ClientCreate, session: SessionDep, caller: CurrentCaller, settings: SettingsDep
) -> ClientPublic:
    """Register a client; the answer shows the compliance gaps the registration opened."""
    return await service.register_client(session, caller, data, settings=settings)


@router.get("/clients")
async def list_clients(
    session: SessionDep,
    caller: CurrentCaller,
    page: Pagination,
    log: AccessLogDep,
    region: Annotated[str | None, Query(pattern=r"^\d{2}$")] = None,
    status: Literal["active", "ended", "upcoming"] | None = None,
    compliance: Literal["ok", "gap", "overdue"] | None = None,
) -> PageOut[ClientSummary]:
    """Clients the caller's region is involved in."""
    result = await service.list_clients(session, caller, region=region, status=status, compliance=compliance, page=page)
    await log.record(client.id for client in result.items)
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.post("/clients/search")
async def search_clients(
    query: ClientSearch, session: SessionDep, caller: CurrentCaller, settings: SettingsDep, log: AccessLogDep
) -> PageOut[ClientPublic]:
    """Find a client by identity code or by a source system's id."""
    found = await service.search_clients(session, caller, query, settings=settings)
    await log.record(client.id for client in found)
    return PageOut(items=found, next_cursor=None)


@router.get("/clients/{client_id}")
async def get_client(
    client_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, log: AccessLogDep, response: Response
) -> ClientPublic:
    """One client; the ETag is what ``If-Match`` on its changes expects."""
    client = await service.get_client(session, caller, client_id)
    await log.record([client.id])
    Conditional.tag_with(response, client)
    return client


@router.patch("/clients/{client_id}")
async def update_client(
    client_id: uuid.UUID,
    data: ClientUpdate,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> ClientPublic:
    """Change names, support level, address protection or external ids."""
    current = partial(service.get_client, session, caller, client_id)
    return await cond.apply(
        preconditions.client_row(client_id),
        current,
        lambda: service.update_client(session, caller, client_id, data),
        response,
    )


@router.post("/clients/{client_id}/moves", status_code=201)
async def create_move(
    client_id: uuid.UUID,
    data: MoveCreate,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> ClientPublic:
    """Record a move to a new residence."""
    current = partial(service.get_client, session, caller, client_id)
    return await cond.apply(
        preconditions.client_row(client_id),
        current,
        lambda: residence.move_client(session, caller, client_id, data),
        response,
    )


@router.post("/clients/{client_id}/organising-transfers", status_code=201)
async def create_organising_transfer(
    client_id: uuid.UUID,
    data: OrganisingTransferCreate,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
) -> CoordinationRequestPublic:
    """Propose handing the organising responsibility to another region."""
    current = partial(service.get_client, session, caller, client_id)
    return await cond.apply(
        preconditions.client_row(client_id),
        current,
        lambda: residence.propose_organising_transfer(session, caller, client_id, data),
    )


@router.post("/clients/{client_id}/end")
async def end_client(
    client_id: uuid.UUID,
    data: ClientEnd,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> ClientPublic:
    """End aftercare early (``end_date`` is its last day)."""
    current = partial(service.get_client, session, caller, client_id)
    return await cond.apply(
        preconditions.client_row(client_id),
        current,
        lambda: service.end_client(session, caller, client_id, data),
        response,
    )


@router.get("/clients/{client_id}/responsibility")
async def get_responsibility(
    client_id: uuid.UUID,
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    as_of: Day | None = None,
    known_at: Moment | None = None,
) -> ResponsibilityPublic:
    """Who was responsible and who was named on ``as_of``, as recorded at ``known_at``."""
    answer = await history.responsibility(session, caller, client_id, as_of=as_of or today(), known_at=known_at)
    await log.record([client_id])
    return answer


@router.get("/clients/{client_id}/history")
async def get_history(
    client_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, log: AccessLogDep
) -> ClientHistory:
    """The client's whole timeline, oldest first."""
    timeline = await history.history(session, caller, client_id)
    await log.record([client_id])
    return timeline
