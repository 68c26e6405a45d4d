"""Naming workers (rules 2, 3 and 7) and ending their assignments."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain import responsibility as rules
from app.domain.access import Caller
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import Conflict, NotFound, NotResponsible, ResponsibilityTaken, Unprocessable
from app.models.assignment import Assignment, AssignmentCreate, AssignmentEnd, AssignmentPublic
from app.models.client import Client, ResponsibilityPeriod
from app.models.common import RequestKind, RequestStatus, Responsibility, utcnow
from app.models.worker import Worker
from app.services import state
from app.services.access import client_for
from app.services.audit import record_change, snapshot
from app.services.caseload import suggested_worker
from app.services.clock import today
from app.services.compliance import reconcile
from app.services.pagination import Page, PageParams, paginate
from app.services.pairs import end_pairs_of
from app.services.requests import settle_open

ASSIGN_REQUEST = {
    ORGANISING: RequestKind.assign_organising_worker,
    RESIDENCE: RequestKind.assign_residence_worker,
}


def assignment_public(assignment: Assignment, worker: Worker | None = None) -> AssignmentPublic:
    return AssignmentPublic(
        id=assignment.id,
        client_id=assignment.client_id,
        responsibility=Responsibility(assignment.responsibility),
        region=assignment.region,
        worker_id=assignment.worker_id,
        worker_name=worker.name if worker else None,
        worker_role=worker.role if worker else None,
        start_date=assignment.valid_from,
        end_date=assignment.valid_to,
        end_reason=assignment.end_reason,
        recorded_at=assignment.recorded_at,
    )


async def create_assignment(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: AssignmentCreate
) -> AssignmentPublic:
    """Name a worker for the responsibility the caller's region holds on the start date.

    The worker row is locked (shared) before the client row, the order deactivation and role
    changes also take, so a worker cannot be deactivated or demoted half-way through.
    """
    worker_id = data.worker_id
    if worker_id == "suggested":
        worker_id = await _suggested(session, caller, client_id, data)
    worker = (await session.exec(_WORKER_SHARED, params={"worker_id": worker_id})).first()
    client = await client_for(session, caller, client_id, for_update=True)
    if worker is None:
        raise Unprocessable("no such worker", code="worker_not_found")
    start = data.start_date or today()
    periods, assignments, _ = await state.all_rows(session, client.id)  # read once: reconcile needs them too
    assignment = new_assignment(caller, client, worker, state.in_force(periods, start), data.responsibility, start)
    _refuse_overlap(assignments, data.responsibility, start)
    session.add(assignment)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise ResponsibilityTaken() from None
    record_change(session, caller, action="assignment.created", entity=assignment, client_id=client.id)
    await settle_open(
        session,
        caller,
        client.id,
        kinds=[ASSIGN_REQUEST[data.responsibility]],
        status=RequestStatus.accepted,
        note="fulfilled by the assignment",
        to_region=assignment.region,
        assignment_id=assignment.id,
    )
    await reconcile(session, caller, client, cause="assigned")
    await session.commit()
    return assignment_public(assignment, worker)


_WORKER_SHARED = select(Worker).where(Worker.id == bindparam("worker_id")).with_for_update(read=True)


def new_assignment(
    caller: Caller,
    client: Client,
    worker: Worker,
    periods: dict[str, ResponsibilityPeriod],
    responsibility: str,
    start: dt.date,
) -> Assignment:
    """Check naming ``worker`` from ``start`` by rules 2, 3 and 7 and build the row (no database:
    imports build many at once); ``periods``: the client's periods in force on ``start``."""
    if today() > client.aftercare_end:
        raise Unprocessable("the client's aftercare has ended", code="client_ended")
    region = rules.check_assignment(
        responsibility=responsibility,
        caller_region=caller.writer_region(),
        holders=state.holders_of(periods),
        worker=rules.Candidate(region=worker.region, active=worker.active, role=worker.role),
        support_level=client.support_level,
    )
    period = periods[responsibility]
    first = max(period.valid_from, client.aftercare_start)
    if not first <= start <= client.aftercare_end:
        raise Unprocessable(f"start_date must be between {first} and {client.aftercare_end}", code="invalid_dates")
    assignment = Assignment(
        client_id=client.id, responsibility=responsibility, region=region, worker_id=worker.id, valid_from=start
    )
    if period.valid_to is not None:  # the region's hold already has a recorded end (an announced move)
        assignment.valid_to, assignment.valid_to_recorded_at = period.valid_to, utcnow()
        assignment.end_reason = "moved" if responsibility == RESIDENCE else "transferred"
    if client.end_date is not None and (assignment.valid_to is None or assignment.valid_to > client.end_date):
        assignment.valid_to, assignment.valid_to_recorded_at = client.end_date + dt.timedelta(days=1), utcnow()
        assignment.end_reason = "aftercare_ended"
    return assignment


async def _suggested(session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: AssignmentCreate) -> uuid.UUID:
    """The worker the caseload suggests in the region holding the responsibility on the start date."""
    client = await client_for(session, caller, client_id)
    periods = await state.periods_on(session, client.id, data.start_date or today())
    region = periods[data.responsibility].region
    if region is None:
        raise Unprocessable("the client lives outside the regions: no residence worker", code="no_residence_region")
    if region != caller.writer_region():
        raise NotResponsible(f"only region {region} may name the {data.responsibility} worker")
    special = data.responsibility == ORGANISING and client.support_level == "special"
    return await suggested_worker(session, region, role="social_worker" if special else None)


def _refuse_overlap(assignments: Sequence[Assignment], responsibility: str, start: dt.date) -> None:
    """409 while another assignment of the responsibility is open or still running on ``start``."""
    for other in assignments:
        if (
            other.responsibility == responsibility
            and other.retracted_at is None
            and (other.valid_to is None or other.valid_to > start)
        ):
            raise ResponsibilityTaken(assignment_id=str(other.id))


async def list_assignments(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, *, as_of: dt.date | None, page: PageParams
) -> Page[AssignmentPublic]:
    """The client's assignments in force on ``as_of`` (all of them when not given)."""
    client = await client_for(session, caller, client_id)
    statement: Any = (
        select(Assignment, Worker)
        .join(Worker, col(Worker.id) == Assignment.worker_id)
        .where(Assignment.client_id == client.id, col(Assignment.retracted_at).is_(None))
    )
    if as_of is not None:
        statement = statement.where(
            col(Assignment.valid_from) <= as_of,
            col(Assignment.valid_to).is_(None) | (col(Assignment.valid_to) > as_of),
        )
    result = await paginate(
        session,
        statement,
        keys=[col(Assignment.valid_from), col(Assignment.id)],
        key_of=lambda row: (row[0].valid_from, row[0].id),
        parse=[dt.date.fromisoformat, uuid.UUID],
        page=page,
    )
    return Page(items=[assignment_public(a, w) for a, w in result.items], next_cursor=result.next_cursor)


async def close_assignment(
    session: AsyncSession, caller: Caller, assignment: Assignment, *, end: dt.date, reason: str
) -> None:
    """End a running assignment on ``end`` (never before it began), with its pairs; the caller reconciles gaps."""
    before = snapshot(assignment)
    assignment.valid_to, assignment.valid_to_recorded_at = max(end, assignment.valid_from), utcnow()
    assignment.end_reason = reason
    session.add(assignment)
    record_change(
        session, caller, action="assignment.ended", entity=assignment, client_id=assignment.client_id, before=before
    )
    await end_pairs_of(
        session, caller, end=assignment.valid_to, reason=f"assignment ended: {reason}", assignment_id=assignment.id
    )


async def end_assignment(
    session: AsyncSession, caller: Caller, assignment_id: uuid.UUID, data: AssignmentEnd
) -> AssignmentPublic:
    """End an assignment (its region only); the responsibility's gap opens on the end date."""
    region = caller.writer_region()  # before the lookup: a role that never writes learns nothing of ids
    assignment = await session.get(Assignment, assignment_id)
    if assignment is None or assignment.retracted_at is not None:
        raise NotFound("assignment not found", code="assignment_not_found")
    try:
        client = await client_for(session, caller, assignment.client_id, for_update=True)
    except NotFound:
        raise NotFound("assignment not found", code="assignment_not_found") from None
    await session.refresh(assignment)
    if region != assignment.region:
        raise NotResponsible(f"only region {assignment.region} may end this assignment")
    on = today()
    if assignment.valid_to is not None and assignment.valid_to <= on:
        raise Conflict("the assignment has already ended", code="assignment_ended")
    end = data.end_date or on
    last = min(assignment.valid_to or dt.date.max, client.aftercare_end + dt.timedelta(days=1))
    if not assignment.valid_from <= end <= last:
        raise Unprocessable(f"end_date must be between {assignment.valid_from} and {last}", code="invalid_dates")
    await close_assignment(session, caller, assignment, end=end, reason=data.reason)
    await reconcile(session, caller, client, cause="assignment_ended")
    await session.commit()
    return assignment_public(assignment, await session.get(Worker, assignment.worker_id))
