"""Moves (rule 5) and organising-transfer proposals (rule 6)."""

from __future__ import annotations

import uuid

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import Caller
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import Conflict, NotResponsible, Unprocessable
from app.models.client import ClientPublic, MoveCreate, OrganisingTransferCreate, ResponsibilityPeriod
from app.models.common import RequestKind, RequestStatus, utcnow
from app.models.request import CoordinationRequest, CoordinationRequestPublic
from app.services import state
from app.services.access import client_for
from app.services.assignments import close_assignment
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.compliance import reconcile
from app.services.regions import resolve_residence
from app.services.requests import open_request, request_public
from app.services.views import client_public


async def move_client(session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: MoveCreate) -> ClientPublic:
    """Record a move: the old residence period and assignment end on the move date."""
    client = await client_for(session, caller, client_id, for_update=True)
    periods = await state.open_periods(session, client.id)
    old = periods[RESIDENCE]
    if caller.writer_region() not in await state.holding_regions(session, client.id, today()):
        raise NotResponsible("only the organising or the current residence region records a move")
    region, municipality, outside = await resolve_residence(session, data)
    if (region, municipality, outside) == (old.region, old.municipality, old.residence_outside):
        raise Unprocessable("the client already lives there", code="no_change")
    if not old.valid_from < data.effective_date <= client.aftercare_end:
        raise Unprocessable(f"effective_date must be after {old.valid_from} and within aftercare", code="invalid_dates")
    before = snapshot(old)
    old.valid_to, old.valid_to_recorded_at = data.effective_date, utcnow()
    session.add(old)
    record_change(session, caller, action="residence.ended", entity=old, client_id=client.id, before=before)
    await session.flush()  # the open-period index must see the old period closed first
    new = ResponsibilityPeriod(
        client_id=client.id,
        responsibility=RESIDENCE,
        region=region,
        municipality=municipality,
        residence_outside=outside,
        valid_from=data.effective_date,
    )
    session.add(new)
    record_change(session, caller, action="client.moved", entity=new, client_id=client.id)
    if region != old.region:
        for assignment in await state.running_assignments(session, client.id, data.effective_date):
            if assignment.responsibility == RESIDENCE:
                close_assignment(session, caller, assignment, end=data.effective_date, reason="moved")
        if region is not None and region != periods[ORGANISING].region:
            await open_request(
                session,
                caller,
                client,
                kind=RequestKind.assign_residence_worker,
                to_region=region,
                on=today(),
                details={"effective_date": str(data.effective_date)},
            )
    await reconcile(session, caller, client, cause="moved")
    await session.commit()
    return await client_public(session, caller, client)


async def propose_organising_transfer(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: OrganisingTransferCreate
) -> CoordinationRequestPublic:
    """The organising region proposes to hand over; nothing moves until the receiver accepts."""
    client = await client_for(session, caller, client_id, for_update=True)
    periods = await state.open_periods(session, client.id)
    organising = periods[ORGANISING]
    if caller.writer_region() != organising.region:
        raise NotResponsible("only the organising region may propose a transfer")
    receiver = await state.region(session, data.to_region)
    if not receiver.organiser or receiver.code == organising.region:
        raise Unprocessable("to_region must be another organising region", code="invalid_transfer_region")
    if not organising.valid_from < data.effective_date <= client.aftercare_end:
        raise Unprocessable("effective_date must fall within the organising period", code="invalid_dates")
    pending = (
        await session.exec(
            select(CoordinationRequest.id).where(
                CoordinationRequest.client_id == client.id,
                CoordinationRequest.kind == RequestKind.accept_organising_transfer,
                CoordinationRequest.status == RequestStatus.open,
            )
        )
    ).first()
    if pending is not None:
        raise Conflict("an organising transfer is already pending", code="transfer_pending", request_id=str(pending))
    request = await open_request(
        session,
        caller,
        client,
        kind=RequestKind.accept_organising_transfer,
        to_region=receiver.code,
        on=today(),
        message=data.reason,
        details={"effective_date": data.effective_date.isoformat(), "reason": data.reason},
    )
    await session.commit()
    return request_public(request)
