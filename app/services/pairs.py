"""Work pairs: proposed by one side, confirmed by the other, ended by either or by the rules."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import or_, true
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import AUDITOR, COORDINATOR, SYSTEM, Caller
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import Conflict, NotFound, NotResponsible, Unprocessable
from app.models.assignment import Assignment
from app.models.client import Client
from app.models.common import PairKind, PairStatus, RequestKind, RequestStatus, utcnow
from app.models.pair import PairCreate, PairEnd, PairPublic, WorkPair
from app.models.request import CoordinationRequest
from app.models.worker import Worker
from app.services import state
from app.services.access import client_for, held
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.pagination import Page, PageParams, paginate
from app.services.requests import open_request, settle

LIVE = (PairStatus.proposed, PairStatus.active)


def pair_public(pair: WorkPair, on: dt.date | None = None, known_at: dt.datetime | None = None) -> PairPublic:
    """The pair as of ``on`` and as recorded at ``known_at``: an end still ahead reads as active,
    an end recorded after ``known_at`` is not shown."""
    on = on or today()
    status, end, reason = pair.status, pair.valid_to, pair.end_reason
    if known_at is not None and pair.ended_at is not None and pair.ended_at > known_at:
        status, end, reason = (PairStatus.active if pair.valid_from else PairStatus.proposed), None, None
    if status == PairStatus.ended and pair.valid_from is not None and end is not None and end > on:
        status = PairStatus.active
    return PairPublic(
        id=pair.id,
        client_id=pair.client_id,
        kind=pair.kind,
        status=status,
        worker_ids=[pair.worker_1_id, pair.worker_2_id],
        assignment_ids=[a for a in (pair.assignment_1_id, pair.assignment_2_id) if a is not None],
        proposed_by_region=pair.proposed_by_region,
        confirm_region=pair.confirm_region,
        proposed_at=pair.proposed_at,
        start_date=pair.valid_from,
        end_date=end,
        end_reason=reason,
        confirmed_at=pair.confirmed_at,
    )


async def propose_pair(session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: PairCreate) -> PairPublic:
    """Link two workers for the client; the other side's region confirms."""
    region = caller.writer_region()
    first, second = data.worker_ids
    if first == second:
        raise Unprocessable("a pair needs two different workers", code="validation_error")
    workers = {
        worker.id: worker
        for worker in await session.exec(
            select(Worker).where(col(Worker.id).in_(data.worker_ids)).with_for_update(read=True)
        )
    }
    client = await client_for(session, caller, client_id, for_update=True)
    on = today()
    if on > client.aftercare_end:
        raise Unprocessable("the client's aftercare has ended", code="client_ended")
    if len(workers) != 2:
        raise Unprocessable("no such worker", code="worker_not_found")
    if not all(worker.active for worker in workers.values()):
        raise Unprocessable("both workers must be active", code="worker_inactive")
    named = {a.worker_id: a for a in await state.running_assignments(session, client.id, on) if a.valid_from <= on}
    if data.kind == PairKind.cross_region:
        own, other = _cross_region_sides(named, workers, region, await _required(session, client.id, on))
    else:
        own, other = _cross_service_sides(named, workers, region)
    await _refuse_live_pair(session, client.id, data.kind, set(workers), on)
    (w1, a1), (w2, a2) = sorted(
        [(own.id, named.get(own.id)), (other.id, named.get(other.id))], key=lambda pair: pair[0]
    )
    pair = WorkPair(
        client_id=client.id,
        kind=data.kind,
        worker_1_id=w1,
        worker_2_id=w2,
        assignment_1_id=a1.id if a1 else None,
        assignment_2_id=a2.id if a2 else None,
        proposed_by_region=region,
        confirm_region=other.region,
        proposed_by=caller.subject,
    )
    session.add(pair)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("a live pair of this kind already exists for the client", code="pair_exists") from None
    record_change(session, caller, action="pair.proposed", entity=pair, client_id=client.id)
    if other.region != region:
        await open_request(
            session,
            caller,
            client,
            kind=RequestKind.confirm_pair,
            to_region=other.region,
            on=on,
            message=f"confirm the {data.kind} pair",
            details={"pair_id": str(pair.id)},
            pair_id=pair.id,
        )
    await session.commit()
    return pair_public(pair, on)


async def _required(session: AsyncSession, client_id: uuid.UUID, on: dt.date) -> dict[str, str]:
    return state.holders_of(await state.periods_on(session, client_id, on)).required()


def _cross_region_sides(
    named: dict[uuid.UUID, Assignment], workers: dict[uuid.UUID, Worker], region: str, required: dict[str, str]
) -> tuple[Worker, Worker]:
    """(the caller's side, the other side) of a pair of the client's two named workers."""
    if RESIDENCE not in required:
        raise Unprocessable("the client has one responsible region: no cross-region pair", code="no_cross_region")
    holders = {a.responsibility: a.worker_id for a in named.values() if a.region == required.get(a.responsibility)}
    if set(workers) != {holders.get(ORGANISING), holders.get(RESIDENCE)}:
        raise Unprocessable(
            "a cross-region pair joins the client's current organising and residence workers",
            code="not_named_workers",
        )
    by_region = {worker.region: worker for worker in workers.values()}
    if region not in by_region:
        raise NotResponsible("only the organising or the residence region proposes this pair")
    (other,) = [worker for worker in workers.values() if worker.region != region]
    return by_region[region], other


def _cross_service_sides(
    named: dict[uuid.UUID, Assignment], workers: dict[uuid.UUID, Worker], region: str
) -> tuple[Worker, Worker]:
    """(the named worker of the caller's region, the worker of another service)."""
    own = [worker for worker in workers.values() if worker.id in named and worker.region == region]
    if not own:
        raise NotResponsible("a cross-service pair starts from a named worker of the caller's region")
    (other,) = [worker for worker in workers.values() if worker.id != own[0].id]
    if other.service == own[0].service:
        raise Unprocessable("a cross-service pair joins workers of two different services", code="same_service")
    return own[0], other


async def _refuse_live_pair(
    session: AsyncSession, client_id: uuid.UUID, kind: PairKind, workers: set[uuid.UUID], on: dt.date
) -> None:
    """409 while a pair of the kind (cross-region) or of the same workers is live or still in force."""
    statement = select(WorkPair.id).where(
        WorkPair.client_id == client_id,
        or_(col(WorkPair.status).in_(LIVE), col(WorkPair.valid_to) > on),
    )
    if kind == PairKind.cross_region:
        statement = statement.where(WorkPair.kind == kind)
    else:
        first, second = sorted(workers)
        statement = statement.where(WorkPair.worker_1_id == first, WorkPair.worker_2_id == second)
    clash = (await session.exec(statement)).first()
    if clash is not None:
        raise Conflict("a live pair of this kind already exists for the client", code="pair_exists", pair_id=str(clash))


async def _locked_pair(session: AsyncSession, caller: Caller, pair_id: uuid.UUID) -> WorkPair:
    """The pair, its client row and then its own row locked; 404 unless the caller's region is one
    of its two sides (a cross-service side need not be involved with the client otherwise)."""
    region = caller.writer_region()
    pair = await session.get(WorkPair, pair_id)
    if pair is None or region not in {pair.proposed_by_region, pair.confirm_region}:
        raise NotFound("pair not found", code="pair_not_found")
    (await session.exec(select(Client.id).where(Client.id == pair.client_id).with_for_update())).one()
    pair = (await session.exec(select(WorkPair).where(WorkPair.id == pair_id).with_for_update())).one()
    await session.refresh(pair)
    return pair


async def confirm_pair(session: AsyncSession, caller: Caller, pair_id: uuid.UUID) -> PairPublic:
    """The other side's coordinator confirms: the pair is active from today."""
    pair = await _locked_pair(session, caller, pair_id)
    caller.require_coordinator_of(pair.confirm_region)
    on = today()
    await activate(session, caller, pair, on)
    for request in await _confirm_requests(session, pair):
        settle(session, caller, request, RequestStatus.accepted, note="pair confirmed")
    await session.commit()
    return pair_public(pair, on)


async def activate(session: AsyncSession, caller: Caller, pair: WorkPair, on: dt.date) -> None:
    """Proposed → active from ``on``; an end already recorded for a linked assignment (an announced
    move, a planned end) becomes the pair's end too."""
    if pair.status != PairStatus.proposed:
        raise Conflict(f"the pair is {pair.status}, not proposed", code="pair_not_proposed")
    before = snapshot(pair)
    pair.status, pair.valid_from = PairStatus.active, on
    pair.confirmed_at, pair.confirmed_by = utcnow(), caller.subject
    pair.version += 1
    linked = [a for a in (pair.assignment_1_id, pair.assignment_2_id) if a is not None]
    ends = [
        assignment.valid_to
        for assignment in await session.exec(select(Assignment).where(col(Assignment.id).in_(linked)))
        if assignment.valid_to is not None
    ]
    if ends:
        if min(ends) <= on:
            raise Conflict("a worker of the pair no longer holds the assignment", code="pair_stale")
        pair.status, pair.valid_to, pair.ended_at, pair.end_reason = (
            PairStatus.ended,
            min(ends),
            pair.confirmed_at,
            "assignment ends",
        )
    session.add(pair)
    record_change(session, caller, action="pair.confirmed", entity=pair, client_id=pair.client_id, before=before)


async def end_pair(session: AsyncSession, caller: Caller, pair_id: uuid.UUID, data: PairEnd) -> PairPublic:
    """Either side ends (or withdraws) the pair today."""
    pair = await _locked_pair(session, caller, pair_id)  # 404 unless the caller's region is a side
    on = today()
    if pair.status == PairStatus.ended and (pair.valid_to is None or pair.valid_to <= on):
        raise Conflict("the pair has already ended", code="pair_ended")
    await finish(session, caller, pair, end=on, reason=data.reason)
    await session.commit()
    return pair_public(pair, on)


async def finish(
    session: AsyncSession,
    caller: Caller,
    pair: WorkPair,
    *,
    end: dt.date,
    reason: str,
    answered: uuid.UUID | None = None,
) -> None:
    """End a live pair on ``end`` (a proposal is withdrawn) and cancel its open confirmation request.

    ``answered`` is the confirmation request being answered right now, which its answer settles.
    """
    before = snapshot(pair)
    pair.valid_to = _ended_on(pair, end)
    pair.status, pair.ended_at, pair.end_reason = PairStatus.ended, utcnow(), reason
    pair.version += 1
    session.add(pair)
    record_change(session, caller, action="pair.ended", entity=pair, client_id=pair.client_id, before=before)
    for request in await _confirm_requests(session, pair):
        if request.id != answered:
            settle(session, caller, request, RequestStatus.cancelled, note=f"pair ended: {reason}")


def _ended_on(pair: WorkPair, end: dt.date) -> dt.date | None:
    """The last day of a pair ended on ``end``: in force, it ends then (or sooner, as planned); a proposal has none."""
    if pair.valid_from is None:
        return pair.valid_to
    return max(min(end, pair.valid_to or end), pair.valid_from)


async def _confirm_requests(session: AsyncSession, pair: WorkPair) -> list[CoordinationRequest]:
    rows = await session.exec(
        select(CoordinationRequest).where(
            CoordinationRequest.pair_id == pair.id, CoordinationRequest.status == RequestStatus.open
        )
    )
    return list(rows.all())


async def end_pairs_of(
    session: AsyncSession,
    caller: Caller,
    *,
    end: dt.date,
    reason: str,
    assignment_id: uuid.UUID | None = None,
    worker_id: uuid.UUID | None = None,
) -> None:
    """The rules end a worker's or an assignment's live pairs (assignment ended, worker deactivated)."""
    if assignment_id is not None:
        link = or_(col(WorkPair.assignment_1_id) == assignment_id, col(WorkPair.assignment_2_id) == assignment_id)
    else:
        link = or_(col(WorkPair.worker_1_id) == worker_id, col(WorkPair.worker_2_id) == worker_id)
    still = or_(col(WorkPair.status).in_(LIVE), col(WorkPair.valid_to) > end)  # live, or ending later than ``end``
    for pair in await session.exec(select(WorkPair).where(link, still)):
        # the session does not autoflush: a pair this transaction has ended already (with the worker's
        # assignment, say) still looks live to the query; ending it again would log it twice
        if pair.status == PairStatus.ended and pair.valid_to == _ended_on(pair, end):
            continue
        await finish(session, caller, pair, end=end, reason=reason)


async def client_pairs(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, *, page: PageParams
) -> Page[PairPublic]:
    client = await client_for(session, caller, client_id)
    result = await paginate(
        session,
        select(WorkPair).where(WorkPair.client_id == client.id),
        keys=[col(WorkPair.proposed_at), col(WorkPair.id)],
        key_of=lambda pair: (pair.proposed_at, pair.id),
        parse=[dt.datetime.fromisoformat, uuid.UUID],
        page=page,
    )
    on = today()
    return Page(items=[pair_public(pair, on) for pair in result.items], next_cursor=result.next_cursor)


async def get_pair(session: AsyncSession, caller: Caller, pair_id: uuid.UUID) -> PairPublic:
    """One pair, if the caller's region is a side of it or holds or held its client; else 404."""
    pair = (await session.exec(select(WorkPair).where(WorkPair.id == pair_id, _side_or_holder(caller)))).first()
    if pair is None:
        raise NotFound("pair not found", code="pair_not_found")
    return pair_public(pair, today())


def _side_or_holder(caller: Caller) -> Any:
    """SQL: pairs the caller sees: its region is a side of the pair, or holds or held the client."""
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if caller.national:
        return true()
    assert caller.region is not None
    return or_(
        col(WorkPair.proposed_by_region) == caller.region,
        col(WorkPair.confirm_region) == caller.region,
        held(caller.region, WorkPair.client_id),
    )


async def worker_pairs(
    session: AsyncSession, caller: Caller, worker_id: uuid.UUID, *, page: PageParams
) -> Page[PairPublic]:
    """The worker's pairs on clients the caller may see."""
    if await session.get(Worker, worker_id) is None:
        raise NotFound("worker not found", code="worker_not_found")
    statement: Any = (
        select(WorkPair)
        .join(Client, col(Client.id) == WorkPair.client_id)
        .where(
            or_(col(WorkPair.worker_1_id) == worker_id, col(WorkPair.worker_2_id) == worker_id), _side_or_holder(caller)
        )
    )
    result = await paginate(
        session,
        statement,
        keys=[col(WorkPair.id)],
        key_of=lambda pair: (pair.id,),
        parse=[uuid.UUID],
        page=page,
    )
    on = today()
    return Page(items=[pair_public(pair, on) for pair in result.items], next_cursor=result.next_cursor)


def in_force(pairs: list[WorkPair], on: dt.date, known_at: dt.datetime) -> list[WorkPair]:
    """Pairs active on ``on`` as the records stood at ``known_at``."""
    result = []
    for pair in pairs:
        if pair.valid_from is None or pair.confirmed_at is None or pair.confirmed_at > known_at:
            continue
        end = pair.valid_to if pair.ended_at is not None and pair.ended_at <= known_at else None
        if pair.valid_from <= on and (end is None or end > on):
            result.append(pair)
    return result
