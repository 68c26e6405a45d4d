"""Moves (rule 5) and organising transfers: the proposal and, once accepted, the transfer (rule 6)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain import aftercare
from app.domain.access import Caller
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import Conflict, NotResponsible, Unprocessable
from app.models.client import Client, ClientPublic, MoveCreate, OrganisingTransferCreate, ResponsibilityPeriod
from app.models.common import RequestKind, RequestStatus, utcnow
from app.models.request import CoordinationRequest, CoordinationRequestPublic
from app.services import state
from app.services.access import client_for
from app.services.assignments import close_assignment
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.compliance import reconcile
from app.services.regions import resolve_residence
from app.services.requests import open_request, request_public, settle_open
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
                await close_assignment(session, caller, assignment, end=data.effective_date, reason="moved")
        await settle_open(
            session,
            caller,
            client.id,
            kinds=[RequestKind.assign_residence_worker],
            status=RequestStatus.cancelled,
            note="the client moved elsewhere",
            keep_region=region,
        )
        if region is not None and region != periods[ORGANISING].region:
            await open_request(
                session,
                caller,
                client,
                kind=RequestKind.assign_residence_worker,
                to_region=region,
                from_region=periods[ORGANISING].region,  # the organising region needs the worker named
                on=max(today(), data.effective_date),  # due a grace period after the move, not before it
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
    on = today()
    if on > client.aftercare_end:
        raise Unprocessable("the client's aftercare has ended", code="client_ended")
    if not max(organising.valid_from + dt.timedelta(days=1), on) <= data.effective_date <= client.aftercare_end:
        raise Unprocessable(
            "effective_date must be today or later, after the organising period began and within aftercare",
            code="invalid_dates",
        )
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
        on=on,
        message=data.reason,
        details={"effective_date": data.effective_date.isoformat(), "reason": data.reason},
    )
    await session.commit()
    return request_public(request)


async def transfer_organising(
    session: AsyncSession, caller: Caller, client: Client, request: CoordinationRequest
) -> None:
    """Carry out an accepted organising transfer on its effective date (rule 6).

    The old organising period and its running assignments end on that date and the receiver's
    period begins; a residence assignment of the receiver ends too, as its organising worker
    will cover both. The receiver's age limit applies from then on (unless aftercare was ended
    early). Obsolete requests to name an organising worker in the old region are cancelled.
    """
    effective = dt.date.fromisoformat(request.details["effective_date"])
    old = (await state.open_periods(session, client.id))[ORGANISING]
    if old.region != request.from_region or not old.valid_from < effective <= client.aftercare_end:
        raise Conflict("the client's organising responsibility has changed since the proposal", code="transfer_stale")
    receiver = await state.region(session, request.to_region)
    end = client.aftercare_end
    if client.end_date is None:
        end = aftercare.aftercare_end(client.birth_date, receiver.aftercare_end_age)
        if end < effective:
            raise Conflict(
                f"the client is past region {receiver.code}'s age limit on the effective date", code="past_age_limit"
            )
    before = snapshot(old)
    old.valid_to, old.valid_to_recorded_at = effective, utcnow()
    session.add(old)
    record_change(session, caller, action="organising.ended", entity=old, client_id=client.id, before=before)
    await session.flush()  # the open-period index must see the old period closed first
    new = ResponsibilityPeriod(
        client_id=client.id, responsibility=ORGANISING, region=receiver.code, valid_from=effective
    )
    session.add(new)
    record_change(session, caller, action="organising.transferred", entity=new, client_id=client.id)
    for assignment in await state.running_assignments(session, client.id, effective):
        if assignment.responsibility == ORGANISING or assignment.region == receiver.code:
            await close_assignment(session, caller, assignment, end=effective, reason="organising_transferred")
    if end != client.aftercare_end:
        before = snapshot(client)
        client.aftercare_end, client.updated_at, client.version = end, utcnow(), client.version + 1
        session.add(client)
        record_change(
            session, caller, action="client.aftercare_end_changed", entity=client, client_id=client.id, before=before
        )
    await settle_open(
        session,
        caller,
        client.id,
        kinds=[RequestKind.assign_organising_worker],
        status=RequestStatus.cancelled,
        note="the organising responsibility moved",
        to_region=old.region,
    )
    residence = (await state.open_periods(session, client.id)).get(RESIDENCE)
    if residence is not None and residence.region == receiver.code:  # its organising worker now covers both
        await settle_open(
            session,
            caller,
            client.id,
            kinds=[RequestKind.assign_residence_worker],
            status=RequestStatus.cancelled,
            note="the organising responsibility moved to the residence region",
            to_region=receiver.code,
        )
    await reconcile(session, caller, client, cause="organising_transferred")
