"""Cost decisions: proposing, agreeing, disputing, superseding, and reading the register.

Overlaps are refused under a serialising lock rather than an exclusion constraint: whether a
decision is "agreed and not superseded" is derived from two insert-only tables (its answer and
the answers of decisions that supersede it), which no single-table GiST constraint can express
without a mutable status column — and the register must stay insert-only. Every decision write
locks the client row first (as every other client write does), so two agreements for one client
queue, and the second one sees the first and is refused with 409 ``overlapping_decision``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, or_, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app.domain import costs as rules
from app.domain.access import AUDITOR, COORDINATOR, SYSTEM, Caller
from app.errors import Conflict, Forbidden, NotFound, NotResponsible, Unprocessable
from app.models.client import Client
from app.models.common import DecisionStatus, RequestKind, RequestStatus
from app.models.cost import (
    CostDecision,
    CostDecisionCreate,
    CostDecisionEvent,
    CostDecisionPublic,
    CostSummary,
    PaidService,
)
from app.models.request import CoordinationRequest
from app.services import state
from app.services.access import client_for, held
from app.services.audit import record_change
from app.services.clock import today
from app.services.pagination import Page, PageParams, paginate, paginate_loaded
from app.services.requests import open_request, settle
from app.services.spreadsheet import csv_line, json_line

Newer = aliased(CostDecision)
NewerAnswer = aliased(CostDecisionEvent)


# --- derived state, in SQL and in Python -------------------------------------------------------


def _answered(status: str) -> ColumnElement[bool]:
    return exists(
        select(CostDecisionEvent.id).where(
            CostDecisionEvent.decision_id == CostDecision.id, CostDecisionEvent.status == status
        )
    )


def _superseded() -> ColumnElement[bool]:
    return exists(
        select(Newer.id)
        .join(NewerAnswer, col(NewerAnswer.decision_id) == Newer.id)
        .where(col(Newer.supersedes_id) == CostDecision.id, col(NewerAnswer.status) == "agreed")
    )


def status_is(status: DecisionStatus) -> ColumnElement[bool]:
    """SQL: the decision's derived status is ``status`` (as known now)."""
    if status == DecisionStatus.superseded:
        return _superseded()
    if status == DecisionStatus.proposed:
        return and_(~_answered("agreed"), ~_answered("disputed"), ~_superseded())
    return and_(_answered(status.value), ~_superseded())


class Register:
    """Decisions with their answers and agreed successors, loaded in three queries (none without decisions)."""

    def __init__(
        self,
        decisions: Sequence[CostDecision],
        answers: dict[uuid.UUID, CostDecisionEvent],
        successors: dict[uuid.UUID, tuple[uuid.UUID, dt.datetime]],
    ) -> None:
        self.decisions, self.answers, self.successors = decisions, answers, successors

    @classmethod
    async def load(cls, session: AsyncSession, decisions: Sequence[CostDecision]) -> Register:
        ids = [decision.id for decision in decisions]
        if not ids:  # most clients have no decision: no answers or successors to ask for
            return cls(decisions, {}, {})
        answers = {answer.decision_id: answer for answer in await session.exec(_ANSWERS_OF, params={"ids": ids})}
        rows = await session.exec(_SUCCESSORS_OF, params={"ids": ids})
        successors = {old: (new, at) for old, new, at in rows if old is not None}
        return cls(decisions, answers, successors)

    def status(self, decision: CostDecision, known_at: dt.datetime | None = None) -> DecisionStatus:
        answer = self.answers.get(decision.id)
        if answer is not None and known_at is not None and answer.created_at > known_at:
            answer = None
        successor = self.successors.get(decision.id)
        superseded = successor is not None and (known_at is None or successor[1] <= known_at)
        return rules.status_of(answer.status if answer else None, superseded)

    def in_force(self, on: dt.date, known_at: dt.datetime | None = None) -> list[CostDecision]:
        """Agreed, not superseded decisions covering ``on``, as the register stood at ``known_at``."""
        return [
            decision
            for decision in self.decisions
            if (known_at is None or decision.created_at <= known_at)
            and self.status(decision, known_at) == DecisionStatus.agreed
            and rules.covers(decision.valid_from, decision.valid_to, on)
        ]

    def public(self, decision: CostDecision, known_at: dt.datetime | None = None) -> CostDecisionPublic:
        answer = self.answers.get(decision.id)
        if answer is not None and known_at is not None and answer.created_at > known_at:
            answer = None
        successor = self.successors.get(decision.id)
        return CostDecisionPublic(
            id=decision.id,
            client_id=decision.client_id,
            service_type=decision.service_type,  # type: ignore[arg-type]
            payer_region=decision.payer_region,
            payer_service=decision.payer_service,  # type: ignore[arg-type]
            valid_from=decision.valid_from,
            valid_to=decision.valid_to,
            legal_basis=decision.legal_basis,
            legal_basis_code=decision.legal_basis_code,
            reference=decision.reference,
            amount_cap_eur=rules.to_euros(decision.amount_cap_cents),
            notes=decision.notes,
            status=self.status(decision, known_at),
            proposed_by_region=decision.proposed_by_region,
            counterparty_region=decision.counterparty_region,
            proposed_at=decision.created_at,
            answered_at=answer.created_at if answer else None,
            answer_reason=answer.reason if answer and answer.reason else None,
            supersedes=decision.supersedes_id,
            superseded_by=successor[0] if successor and (known_at is None or successor[1] <= known_at) else None,
        )


# --- writes -------------------------------------------------------------------------------------


async def propose(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: CostDecisionCreate
) -> CostDecisionPublic:
    """A region holding a responsibility proposes who pays; the counterparty is asked to agree."""
    region = caller.writer_region()
    client = await client_for(session, caller, client_id, for_update=True)
    on = today()
    holders = await state.holding_regions(session, client.id, on)
    if region not in holders:
        raise NotResponsible("only a region holding a responsibility for the client proposes cost decisions")
    payer = await state.region(session, data.payer_region)
    if not payer.organiser:
        raise Unprocessable("the payer must be one of the 22 regions", code="invalid_payer_region")
    if data.valid_to is not None and data.valid_to <= data.valid_from:
        raise Unprocessable("valid_to must be after valid_from", code="invalid_dates")
    if data.valid_from > client.aftercare_end:
        raise Unprocessable("the decision must begin within the client's aftercare", code="invalid_dates")
    current = state.holders_of(await state.periods_on(session, client.id, max(on, data.valid_from)))
    other = rules.counterparty(
        proposer=region, payer=payer.code, organising=current.organising, residence=current.residence
    )
    if other is None:
        raise Unprocessable(
            "the proposer pays and no other region holds a responsibility: nobody to agree", code="no_counterparty"
        )
    replaced = await _supersedable(session, client.id, data) if data.supersedes else None
    await _refuse_overlap(session, client.id, data.service_type, data.valid_from, data.valid_to, replaced)
    decision = CostDecision(
        client_id=client.id,
        service_type=data.service_type,
        payer_region=payer.code,
        payer_service=data.payer_service,
        valid_from=data.valid_from,
        valid_to=data.valid_to,
        legal_basis=data.legal_basis,
        legal_basis_code=data.legal_basis_code,
        reference=data.reference,
        amount_cap_cents=rules.to_cents(data.amount_cap_eur),
        notes=data.notes,
        proposed_by=caller.subject,
        proposed_by_region=region,
        counterparty_region=other,
        supersedes_id=replaced,
    )
    session.add(decision)
    await session.flush()
    record_change(session, caller, action="cost_decision.proposed", entity=decision, client_id=client.id)
    await open_request(
        session,
        caller,
        client,
        kind=RequestKind.review_cost_decision,
        to_region=other,
        on=on,
        message=f"agree or dispute: {data.service_type} paid by region {payer.code}",
        cost_decision_id=decision.id,
    )
    await session.commit()
    return (await Register.load(session, [decision])).public(decision)


async def _supersedable(session: AsyncSession, client_id: uuid.UUID, data: CostDecisionCreate) -> uuid.UUID:
    """The decision named in ``supersedes``: same client and service type, answered, not yet replaced."""
    old = await session.get(CostDecision, data.supersedes)
    if old is None or old.client_id != client_id:
        raise Unprocessable("supersedes must name a decision of this client", code="invalid_supersedes")
    if old.service_type != data.service_type:
        raise Unprocessable("a decision supersedes one of the same service type", code="invalid_supersedes")
    if data.valid_from > old.valid_from:
        raise Unprocessable(
            f"a correction restates the whole period: valid_from must be {old.valid_from} or earlier",
            code="invalid_supersedes",
        )
    status = (await Register.load(session, [old])).status(old)
    if status == DecisionStatus.proposed:
        raise Conflict("a proposal is agreed or disputed first, then corrected", code="not_supersedable")
    if status == DecisionStatus.superseded:
        raise Conflict("the decision has already been superseded", code="already_superseded")
    return old.id


async def _refuse_overlap(
    session: AsyncSession,
    client_id: uuid.UUID,
    service_type: str,
    valid_from: dt.date,
    valid_to: dt.date | None,
    replaced: uuid.UUID | None,
    *,
    itself: uuid.UUID | None = None,
) -> None:
    """409 if an agreed, not superseded decision of the same kind covers any of these days."""
    candidates = (
        await session.exec(
            select(CostDecision).where(
                CostDecision.client_id == client_id,
                CostDecision.service_type == service_type,
                status_is(DecisionStatus.agreed),
            )
        )
    ).all()
    for other in candidates:
        if other.id in (replaced, itself):
            continue
        if rules.overlaps(valid_from, valid_to, other.valid_from, other.valid_to):
            raise Conflict(
                f"an agreed decision covers part of this period ({other.valid_from} to {other.valid_to or 'open'})",
                code="overlapping_decision",
                decision_id=str(other.id),
            )


async def answer(
    session: AsyncSession,
    caller: Caller,
    decision_id: uuid.UUID,
    status: DecisionStatus,
    reason: str,
    *,
    request_answered: uuid.UUID | None = None,
) -> CostDecisionPublic:
    """The counterparty's coordinator agrees or disputes, once; the review request is settled with it."""
    decision = await _visible(session, caller, decision_id)
    (await session.exec(select(Client.id).where(Client.id == decision.client_id).with_for_update())).one()
    caller.require_coordinator_of(decision.counterparty_region)
    register = await Register.load(session, [decision])
    current = register.status(decision)
    if current != DecisionStatus.proposed:
        raise Conflict(f"the decision is already {current}", code="decision_answered")
    if status == DecisionStatus.agreed:
        if decision.supersedes_id is not None:
            old = await session.get_one(CostDecision, decision.supersedes_id)
            if (await Register.load(session, [old])).status(old) == DecisionStatus.superseded:
                raise Conflict("the decision it corrects has been superseded meanwhile", code="already_superseded")
        await _refuse_overlap(
            session,
            decision.client_id,
            decision.service_type,
            decision.valid_from,
            decision.valid_to,
            decision.supersedes_id,
            itself=decision.id,
        )
    event = CostDecisionEvent(
        decision_id=decision.id,
        status=status.value,
        reason=reason,
        actor=caller.subject,
        actor_region=decision.counterparty_region,
    )
    session.add(event)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("the decision has already been answered", code="decision_answered") from None
    record_change(session, caller, action=f"cost_decision.{status.value}", entity=event, client_id=decision.client_id)
    if status == DecisionStatus.agreed and decision.supersedes_id is not None:
        await _settle_rival_corrections(session, caller, decision)
    outcome = RequestStatus.accepted if status == DecisionStatus.agreed else RequestStatus.declined
    for request in await session.exec(
        select(CoordinationRequest).where(
            CoordinationRequest.cost_decision_id == decision.id, CoordinationRequest.status == RequestStatus.open
        )
    ):
        if request.id != request_answered:
            settle(session, caller, request, outcome, note=reason or f"decision {status.value}")
    await session.flush()
    register = await Register.load(session, [decision])
    if request_answered is None:
        await session.commit()
    return register.public(decision)


async def _settle_rival_corrections(session: AsyncSession, caller: Caller, agreed: CostDecision) -> None:
    """Other pending corrections of the same decision can no longer be agreed: close their reviews."""
    rivals = select(CostDecision.id).where(
        CostDecision.supersedes_id == agreed.supersedes_id, CostDecision.id != agreed.id
    )
    for request in await session.exec(
        select(CoordinationRequest).where(
            col(CoordinationRequest.cost_decision_id).in_(rivals), CoordinationRequest.status == RequestStatus.open
        )
    ):
        settle(session, caller, request, RequestStatus.cancelled, note=f"superseded meanwhile by decision {agreed.id}")


# --- reads ----------------------------------------------------------------------------------------


def _party(caller: Caller) -> ColumnElement[bool]:
    """SQL: decisions the caller's region is a party to (payer, proposer or counterparty)."""
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if caller.national:
        return true()
    return or_(
        col(CostDecision.payer_region) == caller.region,
        col(CostDecision.proposed_by_region) == caller.region,
        col(CostDecision.counterparty_region) == caller.region,
    )


def _party_or_holder(caller: Caller) -> ColumnElement[bool]:
    """SQL: a party to the decision, or a region holding or having held a responsibility for its client."""
    party = _party(caller)
    if caller.national or caller.region is None:
        return party
    return or_(party, held(caller.region, CostDecision.client_id))


async def _visible(session: AsyncSession, caller: Caller, decision_id: uuid.UUID) -> CostDecision:
    """The decision if the caller's region is a party to it or involved with its client, else 404."""
    statement = select(CostDecision).where(CostDecision.id == decision_id, _party_or_holder(caller))
    decision = (await session.exec(statement)).first()
    if decision is None:
        raise NotFound("cost decision not found", code="cost_decision_not_found")
    return decision


async def get_decision(session: AsyncSession, caller: Caller, decision_id: uuid.UUID) -> CostDecisionPublic:
    decision = await _visible(session, caller, decision_id)
    return (await Register.load(session, [decision])).public(decision)


async def client_decisions(
    session: AsyncSession,
    caller: Caller,
    client_id: uuid.UUID,
    *,
    service_type: str | None,
    as_of: dt.date | None,
    page: PageParams,
) -> Page[CostDecisionPublic]:
    """The client's decisions, oldest first; with ``as_of`` only those in force that day.

    Whether a decision is in force depends on the whole supersede chain, so the client's register
    is read whole (one client's decisions are few) and paged in memory by the same keys.
    """
    client = await client_for(session, caller, client_id)
    statement = select(CostDecision).where(CostDecision.client_id == client.id, _party_or_holder(caller))
    if service_type:
        statement = statement.where(CostDecision.service_type == service_type)
    decisions = (await session.exec(statement.order_by(col(CostDecision.created_at), col(CostDecision.id)))).all()
    register = await Register.load(session, decisions)
    chosen = register.in_force(as_of) if as_of is not None else decisions
    result = paginate_loaded(
        sorted(chosen, key=lambda d: (d.created_at, d.id)),
        key_of=lambda d: (d.created_at, d.id),
        parse=[dt.datetime.fromisoformat, uuid.UUID],
        page=page,
    )
    return Page(items=[register.public(decision) for decision in result.items], next_cursor=result.next_cursor)


# built once (building a statement and its cache key costs more than sending it)
_DECISIONS_OF = select(CostDecision).where(CostDecision.client_id == bindparam("client_id"))
_ANSWERS_OF = select(CostDecisionEvent).where(col(CostDecisionEvent.decision_id).in_(bindparam("ids", expanding=True)))
_SUCCESSORS_OF = (
    select(Newer.supersedes_id, Newer.id, NewerAnswer.created_at)
    .join(NewerAnswer, col(NewerAnswer.decision_id) == Newer.id)
    .where(col(Newer.supersedes_id).in_(bindparam("ids", expanding=True)), col(NewerAnswer.status) == "agreed")
)


async def in_force_for(
    session: AsyncSession, client_id: uuid.UUID, on: dt.date, known_at: dt.datetime
) -> list[CostDecisionPublic]:
    """For ``responsibility?as_of=&known_at=``: what was agreed to be paid on ``on``, as known then."""
    decisions = (await session.exec(_DECISIONS_OF, params={"client_id": client_id})).all()
    register = await Register.load(session, decisions)
    return [register.public(decision, known_at) for decision in register.in_force(on, known_at)]


def _register_query(caller: Caller, payer_region: str | None, status: DecisionStatus | None) -> SelectOfScalar[Any]:
    statement = select(CostDecision).where(_party(caller))
    if payer_region:
        statement = statement.where(CostDecision.payer_region == payer_region)
    if status is not None:
        statement = statement.where(status_is(status))
    return statement


async def list_decisions(
    session: AsyncSession,
    caller: Caller,
    *,
    payer_region: str | None,
    status: DecisionStatus | None,
    page: PageParams,
) -> Page[CostDecisionPublic]:
    """Decisions the caller's region is a party to, filtered by payer and derived status."""
    result = await paginate(
        session,
        _register_query(caller, payer_region, status),
        keys=[col(CostDecision.id)],
        key_of=lambda decision: (decision.id,),
        parse=[uuid.UUID],
        page=page,
    )
    register = await Register.load(session, result.items)
    return Page(items=[register.public(d) for d in result.items], next_cursor=result.next_cursor)


def _require_region_reader(caller: Caller, region: str) -> None:
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if not caller.national and caller.region != region:
        raise Forbidden("the caller's own region only")


async def summary(session: AsyncSession, caller: Caller, region: str) -> CostSummary:
    """Open disputes, proposals waiting for an answer, and what the region pays for today."""
    _require_region_reader(caller, region)
    await state.region(session, region)
    on = today()
    party = or_(
        col(CostDecision.payer_region) == region,
        col(CostDecision.proposed_by_region) == region,
        col(CostDecision.counterparty_region) == region,
    )

    async def count(*conditions: ColumnElement[bool]) -> int:
        return (await session.exec(select(func.count()).select_from(CostDecision).where(*conditions))).one()

    paying = await session.exec(
        select(CostDecision.service_type, func.count(), func.coalesce(func.sum(CostDecision.amount_cap_cents), 0))
        .where(
            CostDecision.payer_region == region,
            status_is(DecisionStatus.agreed),
            col(CostDecision.valid_from) <= on,
            or_(col(CostDecision.valid_to).is_(None), col(CostDecision.valid_to) > on),
        )
        .group_by(col(CostDecision.service_type))
        .order_by(col(CostDecision.service_type))
    )
    return CostSummary(
        region=region,
        as_of=on,
        open_disputes=await count(party, status_is(DecisionStatus.disputed)),
        awaiting_our_answer=await count(
            col(CostDecision.counterparty_region) == region, status_is(DecisionStatus.proposed)
        ),
        awaiting_their_answer=await count(
            col(CostDecision.proposed_by_region) == region, status_is(DecisionStatus.proposed)
        ),
        paying=[
            PaidService(service_type=kind, decisions=n, amount_cap_eur=rules.euros(int(total)))  # type: ignore[arg-type]
            for kind, n, total in paying
        ],
    )


EXPORT_FIELDS = [
    "id",
    "client_id",
    "birth_year",
    "service_type",
    "payer_region",
    "payer_service",
    "valid_from",
    "valid_to",
    "status",
    "legal_basis",
    "legal_basis_code",
    "reference",
    "amount_cap_eur",
    "proposed_by_region",
    "counterparty_region",
    "proposed_at",
    "answered_at",
    "supersedes",
    "superseded_by",
]
EXPORT_BATCH = 500


def check_export(caller: Caller, payer_region: str) -> None:
    """A region's finance department (its coordinators and auditors) or a national auditor."""
    caller.require(COORDINATOR, AUDITOR)
    if not caller.national and caller.region != payer_region:
        raise Forbidden("the caller's own region only")


async def export_clients(session: AsyncSession, payer_region: str) -> list[uuid.UUID]:
    """The clients an export of the region's register names (for its access-log entry)."""
    rows = await session.exec(
        select(CostDecision.client_id).where(CostDecision.payer_region == payer_region).distinct()
    )
    return list(rows.all())


async def export(session: AsyncSession, caller: Caller, payer_region: str, fmt: str) -> AsyncIterator[str]:
    """The region's register as CSV or JSON lines, in batches (no identity codes: client id and birth year)."""
    if fmt == "csv":
        yield csv_line(EXPORT_FIELDS)
    after: uuid.UUID | None = None
    while True:
        statement = (
            select(CostDecision, col(Client.birth_date))
            .join(Client, col(Client.id) == CostDecision.client_id)
            .where(CostDecision.payer_region == payer_region)
            .order_by(col(CostDecision.id))
            .limit(EXPORT_BATCH)
        )
        if after is not None:
            statement = statement.where(col(CostDecision.id) > after)
        rows = (await session.exec(statement)).all()
        if not rows:
            return
        register = await Register.load(session, [decision for decision, _ in rows])
        await session.commit()  # no transaction stays open while the reader is slow (SQLite's write lock)
        for decision, birth_date in rows:
            public = register.public(decision).model_dump(mode="json")
            record = {field: public.get(field) for field in EXPORT_FIELDS}
            record["birth_year"] = birth_date.year
            record["proposed_at"] = public["proposed_at"]
            yield (csv_line([record[field] for field in EXPORT_FIELDS]) if fmt == "csv" else json_line(record))
        after = rows[-1][0].id
