"""Loading a client's periods, assignments and gaps."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.responsibility import ORGANISING, RESIDENCE, Holders
from app.errors import NotFound
from app.models.assignment import Assignment, ComplianceGap
from app.models.client import ResponsibilityPeriod
from app.models.region import Region


async def open_periods(session: AsyncSession, client_id: uuid.UUID) -> dict[str, ResponsibilityPeriod]:
    """responsibility → the current (open-ended) period."""
    rows = await session.exec(
        select(ResponsibilityPeriod).where(
            ResponsibilityPeriod.client_id == client_id,
            col(ResponsibilityPeriod.valid_to).is_(None),
            col(ResponsibilityPeriod.retracted_at).is_(None),
        )
    )
    return {row.responsibility: row for row in rows}


def holders_of(periods: dict[str, ResponsibilityPeriod]) -> Holders:
    organising = periods[ORGANISING].region
    assert organising is not None
    residence = periods.get(RESIDENCE)
    return Holders(organising=organising, residence=residence.region if residence else None)


async def open_assignments(session: AsyncSession, client_id: uuid.UUID) -> dict[str, Assignment]:
    rows = await session.exec(
        select(Assignment).where(
            Assignment.client_id == client_id,
            col(Assignment.valid_to).is_(None),
            col(Assignment.retracted_at).is_(None),
        )
    )
    return {row.responsibility: row for row in rows}


async def all_rows(
    session: AsyncSession, client_id: uuid.UUID
) -> tuple[Sequence[ResponsibilityPeriod], Sequence[Assignment], Sequence[ComplianceGap]]:
    """Every period, assignment and gap ever recorded for a client (its history is small)."""
    periods = (
        await session.exec(select(ResponsibilityPeriod).where(ResponsibilityPeriod.client_id == client_id))
    ).all()
    assignments = (await session.exec(select(Assignment).where(Assignment.client_id == client_id))).all()
    gaps = (await session.exec(select(ComplianceGap).where(ComplianceGap.client_id == client_id))).all()
    return periods, assignments, gaps


async def region(session: AsyncSession, code: str) -> Region:
    found = await session.get(Region, code)
    if found is None:
        raise NotFound(f"region {code} not found", code="region_not_found")
    return found


async def last_end(session: AsyncSession, client_id: uuid.UUID, responsibility: str) -> dt.date | None:
    """When the latest ended assignment of a responsibility ended."""
    rows = await session.exec(
        select(col(Assignment.valid_to)).where(
            Assignment.client_id == client_id,
            Assignment.responsibility == responsibility,
            col(Assignment.valid_to).is_not(None),
            col(Assignment.retracted_at).is_(None),
        )
    )
    ends = [end for end in rows if end is not None]
    return max(ends) if ends else None
