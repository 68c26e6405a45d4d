"""Compliance gaps: kept in step with periods and assignments by ``reconcile`` (rule 4)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, case, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain import compliance as rules
from app.domain.access import Caller
from app.errors import Forbidden
from app.models.assignment import Assignment, ComplianceGap, CompliancePublic, GapPublic
from app.models.client import Client, ResponsibilityPeriod
from app.models.common import Responsibility, utcnow
from app.models.region import Region
from app.services import state
from app.services.access import client_for
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.pagination import Page, PageParams, paginate


async def reconcile(session: AsyncSession, caller: Caller, client: Client, *, cause: str) -> None:
    """Bring the client's gap rows in line with its whole known timeline (rule 4).

    Gaps are derived from the periods and assignments, including future-dated ones: a gap row
    is kept when its stretch still exists (its end adjusted), voided (ended on its first day)
    when the stretch no longer exists, and added for each new stretch. Every change is logged.
    """
    await session.flush()
    periods, assignments, rows = await state.all_rows(session, client.id)
    plan = plan_gaps(client, periods, assignments, rows)
    for gap, until, closed_by in plan.ends:
        action, before = end_gap(gap, until, closed_by, cause)
        session.add(gap)
        record_change(session, caller, action=action, entity=gap, client_id=gap.client_id, before=before)
    await session.flush()  # voided rows leave the open-gap index before new ones arrive
    on = today()
    for span in plan.new:
        gap = new_gap(client.id, span, (await state.region(session, span.region)).grace_days, on, cause)
        session.add(gap)
        record_change(session, caller, action="gap.opened", entity=gap, client_id=client.id)


@dataclass
class GapPlan:
    """What ``reconcile`` does: end these rows (a new last day, or voided), and open these stretches."""

    ends: list[tuple[ComplianceGap, dt.date | None, uuid.UUID | None]] = field(default_factory=list)
    new: list[rules.GapSpan] = field(default_factory=list)


def plan_gaps(
    client: Client,
    periods: Sequence[ResponsibilityPeriod],
    assignments: Sequence[Assignment],
    rows: Sequence[ComplianceGap],
) -> GapPlan:
    """The gap rows' changes for the client's whole timeline (no database: imports plan many at once)."""
    wanted = rules.gap_spans(
        periods=[
            rules.Span(p.responsibility, p.region, p.valid_from, p.valid_to) for p in periods if p.retracted_at is None
        ],
        assignments=[
            rules.Cover(a.id, a.responsibility, a.region, a.valid_from, a.valid_to)
            for a in assignments
            if a.retracted_at is None
        ],
        start=client.aftercare_start,
        end=client.aftercare_end + dt.timedelta(days=1) if client.end_date is not None else None,
    )
    plan = GapPlan()
    live = {(gap.responsibility, gap.region, gap.since): gap for gap in rows if gap.closed_on != gap.since}
    for span in wanted:
        gap = live.pop((span.responsibility, span.region, span.since), None)
        if gap is not None and gap.closed_on != span.until:
            plan.ends.append((gap, span.until, span.closed_by))
    plan.ends.extend((gap, gap.since, None) for gap in live.values())
    known = {(gap.responsibility, gap.region, gap.since) for gap in rows if gap.closed_on != gap.since}
    plan.new = [span for span in wanted if (span.responsibility, span.region, span.since) not in known]
    return plan


def new_gap(client_id: uuid.UUID, span: rules.GapSpan, grace_days: int, on: dt.date, cause: str) -> ComplianceGap:
    gap = ComplianceGap(
        client_id=client_id,
        responsibility=span.responsibility,
        region=span.region,
        since=span.since,
        due=rules.gap_due(span.since, on, grace_days),
        cause=cause,
    )
    _end(gap, span.until, span.closed_by, cause)
    return gap


def end_gap(
    gap: ComplianceGap, until: dt.date | None, closed_by: uuid.UUID | None, cause: str
) -> tuple[str, dict[str, Any] | None]:
    """Give a gap its (new) last day (None reopens it, ``gap.since`` voids it): the action and the row before."""
    before = snapshot(gap)
    _end(gap, until, closed_by, cause)
    return ("gap.reopened" if until is None else "gap.closed"), before


def _end(gap: ComplianceGap, until: dt.date | None, closed_by: uuid.UUID | None, cause: str) -> None:
    gap.closed_on = until
    gap.closed_at = utcnow() if until is not None else None
    gap.closed_by_assignment_id = closed_by
    gap.close_reason = None if until is None else ("assigned" if closed_by else cause)


class GapLike(Protocol):
    """What ``gap_public`` reads of a gap: a model instance or a plain row."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def client_id(self) -> uuid.UUID: ...
    @property
    def responsibility(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def since(self) -> dt.date: ...
    @property
    def due(self) -> dt.date: ...
    @property
    def cause(self) -> str: ...


def gap_public(gap: GapLike, on: dt.date) -> GapPublic:
    return GapPublic(
        id=gap.id,
        client_id=gap.client_id,
        responsibility=Responsibility(gap.responsibility),
        region=gap.region,
        since=gap.since,
        due=gap.due,
        overdue=rules.is_overdue(gap.due, on),
        cause=gap.cause,
    )


def gap_in_force(on: dt.date) -> ColumnElement[bool]:
    """SQL: the gap existed on ``on`` (as currently known)."""
    return (col(ComplianceGap.since) <= on) & (
        col(ComplianceGap.closed_on).is_(None) | (col(ComplianceGap.closed_on) > on)
    )


async def list_gaps(
    session: AsyncSession, caller: Caller, *, region: str | None, overdue: bool | None, page: PageParams
) -> Page[GapPublic]:
    """Open gaps of a region (the caller's own unless a national auditor), most urgent first."""
    caller.require("system", "coordinator", "auditor")
    region = region or caller.region
    if not caller.national and region != caller.region:
        raise Forbidden("gaps can be listed for the caller's own region only")
    on = today()
    statement = (
        select(ComplianceGap)
        .join(Client, col(Client.id) == ComplianceGap.client_id)
        .where(gap_in_force(on), col(Client.aftercare_end) >= on)
    )
    if region:
        statement = statement.where(ComplianceGap.region == region)
    if overdue is not None:
        statement = statement.where((col(ComplianceGap.due) < on) if overdue else (col(ComplianceGap.due) >= on))
    result = await paginate(
        session,
        statement,
        keys=[col(ComplianceGap.due), col(ComplianceGap.id)],
        key_of=lambda gap: (gap.due.isoformat(), gap.id),
        parse=[dt.date.fromisoformat, uuid.UUID],
        page=page,
    )
    return Page(items=[gap_public(gap, on) for gap in result.items], next_cursor=result.next_cursor)


async def count_gaps(session: AsyncSession, *, on: dt.date) -> dict[str, tuple[int, int]]:
    """Per region (every region, zeros included): its open gaps on ``on`` and how many of them are overdue.

    "Open" as in ``list_gaps``: in force on ``on``, of a client whose aftercare has not ended.
    """
    overdue = func.sum(case((col(ComplianceGap.due) < on, 1), else_=0))
    open_gaps = (
        select(col(ComplianceGap.region).label("region"), func.count().label("open"), overdue.label("overdue"))
        .join(Client, col(Client.id) == ComplianceGap.client_id)
        .where(gap_in_force(on), col(Client.aftercare_end) >= on)
        .group_by(col(ComplianceGap.region))
        .subquery()
    )
    statement = select(
        col(Region.code), func.coalesce(open_gaps.c.open, 0), func.coalesce(open_gaps.c.overdue, 0)
    ).outerjoin(open_gaps, open_gaps.c.region == col(Region.code))
    rows = (await session.exec(statement)).all()
    return {code: (int(opened), int(late)) for code, opened, late in rows}


async def client_compliance(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, *, as_of: dt.date
) -> CompliancePublic:
    """The client's status on ``as_of`` and each responsibility missing a named worker."""
    client = await client_for(session, caller, client_id)
    gaps = (
        await session.exec(select(ComplianceGap).where(ComplianceGap.client_id == client.id, gap_in_force(as_of)))
    ).all()
    active = client.aftercare_start <= as_of <= client.aftercare_end
    return CompliancePublic(
        status=rules.compliance_status(active=active, missing=len(gaps))
        if as_of >= client.aftercare_start
        else "upcoming",
        as_of=as_of,
        missing=[gap_public(gap, as_of) for gap in gaps] if active else [],
    )
