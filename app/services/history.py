"""Who was responsible on a date (as known at a moment), and the whole timeline of a client."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import plain_rows
from app.domain import aftercare
from app.domain.access import Caller
from app.domain.compliance import compliance_status
from app.domain.history import in_force
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.models.assignment import Assignment, ComplianceGap
from app.models.client import (
    ClientHistory,
    HeldResponsibility,
    NamedWorker,
    ResponsibilityPeriod,
    ResponsibilityPublic,
    TimelineEntry,
)
from app.models.common import RequestStatus, ResidenceOutside, utcnow
from app.models.pair import WorkPair
from app.models.request import CoordinationRequest, CoordinationRequestPublic
from app.models.worker import Worker
from app.services import costs, pairs, state
from app.services.access import client_for, client_with_presence
from app.services.audit import note_organisers
from app.services.clock import local_date, today
from app.services.compliance import gap_public
from app.services.pairs import pair_public
from app.services.requests import request_public


async def responsibility(
    session: AsyncSession,
    caller: Caller,
    client_id: uuid.UUID,
    *,
    as_of: dt.date,
    known_at: dt.datetime | None,
) -> ResponsibilityPublic:
    """Organising and residence region with named workers on ``as_of``, as recorded at ``known_at``."""
    client, present = await client_with_presence(session, caller, client_id)
    # a read: no write follows, so its rows need not be state.all_rows' (kept for the transaction) nor
    # ORM instances: plain rows, here and for its requests and pairs (issue 9)
    of_client = {"client_id": client.id}
    periods = await plain_rows(session, state.PERIODS_OF, of_client)
    assignments = await plain_rows(session, _ASSIGNMENTS, of_client)  # each with its worker's name and role
    gaps = await plain_rows(session, state.GAPS_OF, of_client)
    organising_today = state.in_force(periods, today()).get(ORGANISING)
    if organising_today is not None:  # the access entry's disclosure need not look it up again
        note_organisers(session, {client.id: organising_today.region})
    period_now = {row.responsibility: row for row in in_force(periods, as_of, known_at)}
    assignment_now = {row.responsibility: row for row in in_force(assignments, as_of, known_at)}

    def held(resp: str) -> HeldResponsibility | None:
        period = period_now.get(resp)
        if period is None:
            return None
        assignment = assignment_now.get(resp)
        named = None
        if assignment is not None:
            named = NamedWorker(
                assignment_id=assignment.id,
                worker_id=assignment.worker_id,
                name=assignment.name,
                role=assignment.role,
                since=assignment.valid_from,
            )
        return HeldResponsibility(
            region=period.region,
            since=period.valid_from,
            residence_outside=ResidenceOutside(period.residence_outside) if period.residence_outside else None,
            named_worker=named,
        )

    stamp = known_at or utcnow()
    missing = [
        gap_public(gap, as_of)
        for gap in gaps
        if gap.opened_at <= stamp
        and gap.since <= as_of
        and (gap.closed_on is None or gap.closed_on > as_of or (gap.closed_at and gap.closed_at > stamp))
    ]
    status = aftercare.status(client.aftercare_start, client.aftercare_end, as_of)
    requests = await plain_rows(session, _REQUESTS, of_client) if present.requests else ()
    pending = [
        request
        for request in requests
        if request.created_at <= stamp
        and local_date(request.created_at) <= as_of
        and (request.answered_at is None or request.answered_at > stamp or local_date(request.answered_at) > as_of)
    ]
    pairs_ever = list(await plain_rows(session, _PAIRS, of_client)) if present.pairs else []
    pairs_then = pairs.in_force(pairs_ever, as_of, stamp)
    return ResponsibilityPublic(
        client_id=client.id,
        as_of=as_of,
        known_at=stamp,
        status=status,
        organising=held(ORGANISING),
        residence=held(RESIDENCE) if status != "ended" else None,
        compliance=compliance_status(active=status != "ended", missing=len(missing)),
        missing=missing if status != "ended" else [],
        pairs=[pair_public(pair, as_of, stamp) for pair in pairs_then],
        cost_decisions=await costs.in_force_for(session, client.id, as_of, stamp) if present.decisions else [],
        pending_requests=[_as_then(request_public(request, as_of), stamp) for request in pending],
    )


# built once: building a statement and its cache key costs more than sending it (issue 9)
_ASSIGNMENTS = (
    select(Assignment, Worker.name, Worker.role)
    .join(Worker, col(Worker.id) == Assignment.worker_id)
    .where(Assignment.client_id == bindparam("client_id"))
)
_REQUESTS = select(CoordinationRequest).where(CoordinationRequest.client_id == bindparam("client_id"))
_PAIRS = select(WorkPair).where(WorkPair.client_id == bindparam("client_id"))


def _as_then(public: CoordinationRequestPublic, stamp: dt.datetime) -> CoordinationRequestPublic:
    """A request as it stood at ``stamp``: an answer given later is not shown."""
    if public.answered_at is not None and public.answered_at > stamp:
        return public.model_copy(
            update={"status": RequestStatus.open, "answered_at": None, "answer_note": None, "assignment_id": None}
        )
    return public


async def history(session: AsyncSession, caller: Caller, client_id: uuid.UUID) -> ClientHistory:
    """Every period, assignment, gap and request of the client, oldest first."""
    client = await client_for(session, caller, client_id)
    periods, assignments, gaps = await state.all_rows(session, client.id)
    requests = await session.exec(select(CoordinationRequest).where(CoordinationRequest.client_id == client.id))
    entries = [TimelineEntry(date=client.aftercare_start, recorded_at=client.created_at, type="aftercare.started")]
    if client.end_date is not None:
        entries.append(
            TimelineEntry(
                date=client.end_date,
                recorded_at=client.updated_at,
                type="aftercare.ended",
                details={"reason": client.end_reason},
            )
        )
    for period in periods:
        # a protected address is shown only to the region the client lived in then
        masked = client.address_protection and caller.region != period.region
        entries.extend(_period_entries(period, show_municipality=not masked))
    for assignment in assignments:
        entries.extend(_assignment_entries(assignment))
    for gap in gaps:
        if gap.closed_on != gap.since:  # a voided gap (a later correction showed it never existed)
            entries.extend(_gap_entries(gap))
    for request in requests:
        details = request_public(request).model_dump(mode="json")
        entries.append(
            TimelineEntry(
                date=local_date(request.created_at),
                recorded_at=request.created_at,
                type="request.created",
                region=request.to_region,
                details=details,
            )
        )
        if request.answered_at is not None:
            entries.append(
                TimelineEntry(
                    date=local_date(request.answered_at),
                    recorded_at=request.answered_at,
                    type=f"request.{request.status}",
                    region=request.answered_by_region,
                    details=details,
                )
            )
    for pair in await session.exec(select(WorkPair).where(WorkPair.client_id == client.id)):
        entries.extend(_pair_entries(pair))
    entries.sort(key=lambda entry: (entry.date, entry.recorded_at))
    return ClientHistory(client_id=client.id, items=entries)


Moment = tuple[dt.date, dt.datetime]  # (valid date, when it was recorded)


def _span(
    kind: tuple[str, str],
    *,
    responsibility: str,
    region: str | None,
    start: Moment,
    end: Moment | None,
    details: dict[str, Any],
    end_details: dict[str, Any] | None = None,
) -> list[TimelineEntry]:
    """The timeline entries of something that started and perhaps ended."""
    entries = [
        TimelineEntry(
            date=start[0],
            recorded_at=start[1],
            type=kind[0],
            responsibility=responsibility,
            region=region,
            details=details,
        )
    ]
    if end is not None:
        entries.append(
            TimelineEntry(
                date=end[0],
                recorded_at=end[1],
                type=kind[1],
                responsibility=responsibility,
                region=region,
                details={**details, **(end_details or {})},
            )
        )
    return entries


def _period_entries(period: ResponsibilityPeriod, *, show_municipality: bool) -> list[TimelineEntry]:
    return _span(
        (f"{period.responsibility}.started", f"{period.responsibility}.ended"),
        responsibility=period.responsibility,
        region=period.region,
        start=(period.valid_from, period.recorded_at),
        end=(period.valid_to, period.valid_to_recorded_at or period.recorded_at) if period.valid_to else None,
        details={
            "municipality": period.municipality if show_municipality else None,
            "residence_outside": period.residence_outside,
            "retracted": period.retracted_at is not None,
        },
    )


def _pair_entries(pair: WorkPair) -> list[TimelineEntry]:
    details = pair_public(pair).model_dump(mode="json", include={"id", "kind", "worker_ids", "assignment_ids"})
    entries = [
        TimelineEntry(
            date=local_date(pair.proposed_at),
            recorded_at=pair.proposed_at,
            type="pair.proposed",
            region=pair.proposed_by_region,
            details=details,
        )
    ]
    if pair.valid_from is not None and pair.confirmed_at is not None:
        entries.append(
            TimelineEntry(
                date=pair.valid_from,
                recorded_at=pair.confirmed_at,
                type="pair.confirmed",
                region=pair.confirm_region,
                details=details,
            )
        )
    if pair.ended_at is not None:
        entries.append(
            TimelineEntry(
                date=pair.valid_to or local_date(pair.ended_at),
                recorded_at=pair.ended_at,
                type="pair.ended",
                details={**details, "reason": pair.end_reason},
            )
        )
    return entries


def _assignment_entries(assignment: Assignment) -> list[TimelineEntry]:
    ended = assignment.valid_to
    return _span(
        ("assignment.created", "assignment.ended"),
        responsibility=assignment.responsibility,
        region=assignment.region,
        start=(assignment.valid_from, assignment.recorded_at),
        end=(ended, assignment.valid_to_recorded_at or assignment.recorded_at) if ended else None,
        details={
            "assignment_id": str(assignment.id),
            "worker_id": str(assignment.worker_id),
            "retracted": assignment.retracted_at is not None,
        },
        end_details={"reason": assignment.end_reason},
    )


def _gap_entries(gap: ComplianceGap) -> list[TimelineEntry]:
    return _span(
        ("gap.opened", "gap.closed"),
        responsibility=gap.responsibility,
        region=gap.region,
        start=(gap.since, gap.opened_at),
        end=(gap.closed_on, gap.closed_at) if gap.closed_on and gap.closed_at else None,
        details={"gap_id": str(gap.id), "due": gap.due.isoformat(), "cause": gap.cause},
        end_details={"reason": gap.close_reason},
    )
