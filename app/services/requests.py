"""Coordination requests: opening them (by hand or by the rules), reading them, and settling them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, bindparam, or_, true
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import AUDITOR, COORDINATOR, SYSTEM, Caller
from app.errors import Conflict, NotFound, NotResponsible, Unprocessable
from app.models.client import Client
from app.models.common import RequestKind, RequestStatus, utcnow
from app.models.request import (
    AUTOMATIC_KINDS,
    CoordinationRequest,
    CoordinationRequestCreate,
    CoordinationRequestPublic,
)
from app.services import state
from app.services.access import client_for
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.pagination import Page, PageParams, paginate

# Kinds a region may open by hand; the others belong to the flows that create them.
MANUAL_KINDS = {RequestKind.assign_residence_worker, RequestKind.assign_organising_worker, RequestKind.other}
RESPONSIBILITY_OF = {
    RequestKind.assign_organising_worker: "organising",
    RequestKind.assign_residence_worker: "residence",
}


async def open_request(
    session: AsyncSession,
    caller: Caller,
    client: Client,
    *,
    kind: RequestKind,
    to_region: str,
    on: dt.date,
    message: str = "",
    details: dict[str, Any] | None = None,
    from_region: str | None = None,
    due_date: dt.date | None = None,
    pair_id: uuid.UUID | None = None,
    cost_decision_id: uuid.UUID | None = None,
) -> CoordinationRequest:
    """Ask ``to_region`` to act about ``client``, due after the receiving region's grace period.

    A request the rules open by themselves is opened once: if the same kind is already open to
    the same region for the client, that request is returned instead of a second one.
    """
    if kind in AUTOMATIC_KINDS:
        pending = (
            await session.exec(
                select(CoordinationRequest).where(
                    CoordinationRequest.client_id == client.id,
                    CoordinationRequest.kind == kind,
                    CoordinationRequest.to_region == to_region,
                    CoordinationRequest.status == RequestStatus.open,
                )
            )
        ).first()
        if pending is not None:
            return pending
    receiver = await state.region(session, to_region)
    request = new_request(
        caller,
        client.id,
        kind=kind,
        to_region=to_region,
        due_date=due_date or on + dt.timedelta(days=receiver.grace_days),
        message=message,
        details=details,
        from_region=from_region,
        pair_id=pair_id,
        cost_decision_id=cost_decision_id,
    )
    session.add(request)
    record_change(session, caller, action="request.created", entity=request, client_id=client.id)
    return request


def new_request(
    caller: Caller,
    client_id: uuid.UUID,
    *,
    kind: RequestKind,
    to_region: str,
    due_date: dt.date,
    message: str = "",
    details: dict[str, Any] | None = None,
    from_region: str | None = None,
    pair_id: uuid.UUID | None = None,
    cost_decision_id: uuid.UUID | None = None,
) -> CoordinationRequest:
    """The request row ``open_request`` adds (imports build many without the database)."""
    return CoordinationRequest(
        client_id=client_id,
        kind=kind,
        from_region=from_region or caller.region or to_region,
        to_region=to_region,
        due_date=due_date,
        message=message,
        details=details or {},
        created_by=caller.subject,
        pair_id=pair_id,
        cost_decision_id=cost_decision_id,
    )


def request_public(request: CoordinationRequest, on: dt.date | None = None) -> CoordinationRequestPublic:
    public = CoordinationRequestPublic.model_validate(request, from_attributes=True)
    public.overdue = request.status == RequestStatus.open and request.due_date < (on or today())
    return public


def visible(caller: Caller) -> ColumnElement[bool]:
    """SQL: requests the caller may read: its region asked or was asked (national auditors: all)."""
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if caller.national:
        return true()
    return or_(
        col(CoordinationRequest.from_region) == caller.region, col(CoordinationRequest.to_region) == caller.region
    )


async def get_request(session: AsyncSession, caller: Caller, request_id: uuid.UUID) -> CoordinationRequestPublic:
    return request_public(await _visible_request(session, caller, request_id))


async def _visible_request(
    session: AsyncSession, caller: Caller, request_id: uuid.UUID, *, for_update: bool = False
) -> CoordinationRequest:
    statement = select(CoordinationRequest).where(CoordinationRequest.id == request_id, visible(caller))
    if for_update:
        statement = statement.with_for_update()
    request = (await session.exec(statement)).first()
    if request is None:
        raise NotFound("coordination request not found", code="request_not_found")
    return request


async def list_requests(
    session: AsyncSession,
    caller: Caller,
    *,
    to_region: str | None,
    from_region: str | None,
    status: RequestStatus | None,
    overdue: bool | None,
    page: PageParams,
) -> Page[CoordinationRequestPublic]:
    """Requests the caller's region asked or was asked, filtered, soonest due first."""
    on = today()
    statement = select(CoordinationRequest).where(visible(caller))
    if to_region:
        statement = statement.where(CoordinationRequest.to_region == to_region)
    if from_region:
        statement = statement.where(CoordinationRequest.from_region == from_region)
    if status is not None:
        statement = statement.where(CoordinationRequest.status == status)
    if overdue is not None:
        late = (col(CoordinationRequest.status) == RequestStatus.open) & (col(CoordinationRequest.due_date) < on)
        statement = statement.where(late if overdue else ~late)
    result = await paginate(
        session,
        statement,
        keys=[col(CoordinationRequest.due_date), col(CoordinationRequest.id)],
        key_of=lambda request: (request.due_date.isoformat(), request.id),
        parse=[dt.date.fromisoformat, uuid.UUID],
        page=page,
    )
    return Page(items=[request_public(request, on) for request in result.items], next_cursor=result.next_cursor)


async def create_request(
    session: AsyncSession, caller: Caller, data: CoordinationRequestCreate
) -> CoordinationRequestPublic:
    """A region involved with the client asks another region to act."""
    region = caller.writer_region()
    client = await client_for(session, caller, data.client_id, for_update=True)
    if data.kind not in MANUAL_KINDS:
        raise Unprocessable(
            f"{data.kind} requests are opened by their own flow (organising transfers, pairs, cost decisions)",
            code="kind_not_allowed",
        )
    on = today()
    if on > client.aftercare_end:
        raise Unprocessable("the client's aftercare has ended", code="client_ended")
    if region not in await state.holding_regions(session, client.id, on):
        raise NotResponsible("only a region holding a responsibility for the client asks about it")
    receiver = await state.region(session, data.to_region)
    if not receiver.organiser or receiver.code == region:
        raise Unprocessable("to_region must be another organising region", code="invalid_request_region")
    if data.due_date is not None and data.due_date < on:
        raise Unprocessable("due_date must not be in the past", code="invalid_dates")
    responsibility = RESPONSIBILITY_OF.get(data.kind)
    if responsibility is not None:
        holders = state.holders_of(await state.periods_on(session, client.id, on)).required()
        if holders.get(responsibility) != receiver.code:
            raise Unprocessable(
                f"region {receiver.code} does not hold the {responsibility} responsibility",
                code="not_holding_region",
            )
        pending = await _open_of(session, client.id, [data.kind], receiver.code)
        if pending:
            raise Conflict("the same request is already open", code="request_pending", request_id=str(pending[0].id))
    request = await open_request(
        session,
        caller,
        client,
        kind=data.kind,
        to_region=receiver.code,
        on=on,
        message=data.message,
        due_date=data.due_date,
    )
    await session.commit()
    return request_public(request, on)


async def _open_of(
    session: AsyncSession, client_id: uuid.UUID, kinds: Iterable[str], to_region: str | None = None
) -> list[CoordinationRequest]:
    statement = _OPEN_OF if to_region is None else _OPEN_OF_TO
    params = {"client_id": client_id, "kinds": list(kinds), "to_region": to_region}
    return list((await session.exec(statement, params=params)).all())


# built once: building it on every call was about 3 % of a POST assignment's server CPU (py-spy)
_OPEN_OF = (
    select(CoordinationRequest)
    .where(
        CoordinationRequest.client_id == bindparam("client_id"),
        CoordinationRequest.status == RequestStatus.open,
        col(CoordinationRequest.kind).in_(bindparam("kinds", expanding=True)),
    )
    .with_for_update()
)
_OPEN_OF_TO = _OPEN_OF.where(CoordinationRequest.to_region == bindparam("to_region"))


def settle(
    session: AsyncSession,
    caller: Caller,
    request: CoordinationRequest,
    status: RequestStatus,
    *,
    note: str,
    assignment_id: uuid.UUID | None = None,
) -> None:
    """Give an open request its answer (the caller has checked who may) and log it."""
    if request.status != RequestStatus.open:
        raise Conflict(f"the request is already {request.status}", code="request_answered")
    before = snapshot(request)
    request.status = status
    request.answered_at, request.answered_by, request.answered_by_region = utcnow(), caller.subject, caller.region
    request.answer_note = note
    request.assignment_id = assignment_id or request.assignment_id
    request.version += 1
    session.add(request)
    record_change(
        session, caller, action=f"request.{status.value}", entity=request, client_id=request.client_id, before=before
    )


async def settle_open(
    session: AsyncSession,
    caller: Caller,
    client_id: uuid.UUID,
    *,
    kinds: Iterable[str],
    status: RequestStatus,
    note: str,
    to_region: str | None = None,
    keep_region: str | None = None,
    assignment_id: uuid.UUID | None = None,
) -> None:
    """Settle the rules' own open requests about a client (fulfilled by an assignment, or obsolete)."""
    for request in await _open_of(session, client_id, kinds, to_region):
        if keep_region is None or request.to_region != keep_region:
            settle(session, caller, request, status, note=note, assignment_id=assignment_id)


async def lock_for_answer(session: AsyncSession, caller: Caller, request_id: uuid.UUID) -> CoordinationRequest:
    """The request, its client row locked first (the order every write takes), then the request row."""
    request = await _visible_request(session, caller, request_id)
    await client_for(session, caller, request.client_id, for_update=True)
    request = await _visible_request(session, caller, request_id, for_update=True)
    await session.refresh(request)
    if request.status != RequestStatus.open:
        raise Conflict(f"the request is already {request.status}", code="request_answered")
    return request
