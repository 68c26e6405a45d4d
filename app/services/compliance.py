"""Compliance gaps: kept in step with periods and assignments by ``reconcile`` (rule 4)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain import compliance as rules
from app.domain.access import Caller
from app.errors import Forbidden
from app.models.assignment import Assignment, ComplianceGap, CompliancePublic, GapPublic
from app.models.client import Client
from app.models.common import Responsibility, utcnow
from app.services import state
from app.services.access import client_for
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.pagination import Page, PageParams, paginate


async def reconcile(
    session: AsyncSession,
    caller: Caller,
    client: Client,
    *,
    cause: str,
    on: dt.date,
    closed_by: Assignment | None = None,
) -> None:
    """Open the gaps the two-region rule now calls for and close the ones no longer missing."""
    periods = await state.open_periods(session, client.id)
    ended = client.end_date is not None or on > client.aftercare_end
    required = {} if ended else state.holders_of(periods).required()
    covered = set(await state.open_assignments(session, client.id))
    gaps = {
        gap.responsibility: gap
        for gap in await session.exec(
            select(ComplianceGap).where(ComplianceGap.client_id == client.id, col(ComplianceGap.closed_at).is_(None))
        )
    }
    plan = rules.plan_gaps(
        required=required,
        covered=covered,
        open_gaps=[rules.OpenGap(resp, gap.region) for resp, gap in gaps.items()],
    )
    for responsibility in plan.close:
        gap = gaps[responsibility]
        before = snapshot(gap)
        gap.closed_at = utcnow()
        if closed_by is not None and closed_by.responsibility == responsibility:
            gap.closed_on, gap.closed_by_assignment_id, gap.close_reason = (
                max(closed_by.valid_from, gap.since),
                closed_by.id,
                "assigned",
            )
        else:
            gap.closed_on, gap.close_reason = max(on, gap.since), cause
        session.add(gap)
        record_change(session, caller, action="gap.closed", entity=gap, client_id=client.id, before=before)
    for responsibility, region_code in plan.open.items():
        since = max(periods[responsibility].valid_from, client.aftercare_start)
        ended_on = await state.last_end(session, client.id, responsibility)
        if ended_on and ended_on > since:
            since = ended_on
        region = await state.region(session, region_code)
        gap = ComplianceGap(
            client_id=client.id,
            responsibility=responsibility,
            region=region_code,
            since=since,
            due=rules.gap_due(since, on, region.grace_days),
            cause=cause,
        )
        session.add(gap)
        record_change(session, caller, action="gap.opened", entity=gap, client_id=client.id)


def gap_public(gap: ComplianceGap, on: dt.date) -> GapPublic:
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
        .where(col(ComplianceGap.closed_at).is_(None), gap_in_force(on), col(Client.aftercare_end) >= on)
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
