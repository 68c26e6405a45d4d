"""Loading a client's periods, assignments and gaps."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from sqlalchemy import ColumnElement, bindparam, event
from sqlalchemy.orm import ORMExecuteState, SessionTransaction
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app.domain.responsibility import ORGANISING, RESIDENCE, Holders
from app.errors import NotFound, Unprocessable
from app.models.assignment import Assignment, ComplianceGap
from app.models.client import ResponsibilityPeriod
from app.models.region import Region


async def open_periods(session: AsyncSession, client_id: uuid.UUID) -> dict[str, ResponsibilityPeriod]:
    """responsibility → the latest (open-ended) period, which may begin in the future (an announced move)."""
    rows = await session.exec(
        select(ResponsibilityPeriod).where(
            ResponsibilityPeriod.client_id == client_id,
            col(ResponsibilityPeriod.valid_to).is_(None),
            col(ResponsibilityPeriod.retracted_at).is_(None),
        )
    )
    return {row.responsibility: row for row in rows}


def running_periods(client_ids: Sequence[uuid.UUID], on: dt.date) -> SelectOfScalar[ResponsibilityPeriod]:
    """SQL: the periods of these clients still running on ``on`` (in force then or yet to begin)."""
    return (
        select(ResponsibilityPeriod)
        .where(
            col(ResponsibilityPeriod.client_id).in_(client_ids),
            col(ResponsibilityPeriod.retracted_at).is_(None),
            col(ResponsibilityPeriod.valid_to).is_(None) | (col(ResponsibilityPeriod.valid_to) > on),
        )
        .order_by(col(ResponsibilityPeriod.valid_from).desc())
    )


class PeriodLike(Protocol):
    """What ``first_of_each`` reads of a period: a model instance or a plain row."""

    @property
    def responsibility(self) -> str: ...

    @property
    def valid_from(self) -> dt.date: ...


P = TypeVar("P", bound=PeriodLike)


def first_of_each(periods: Iterable[P]) -> dict[str, P]:
    """responsibility → the earliest of the given running periods: the one in force, or the next to begin."""
    chosen: dict[str, P] = {}
    for period in periods:
        current = chosen.get(period.responsibility)
        if current is None or period.valid_from < current.valid_from:
            chosen[period.responsibility] = period
    return chosen


async def periods_on(session: AsyncSession, client_id: uuid.UUID, on: dt.date) -> dict[str, ResponsibilityPeriod]:
    """responsibility → the period in force on ``on`` (or the first one, before aftercare begins)."""
    return first_of_each(await session.exec(running_periods([client_id], on)))


async def holding_regions(session: AsyncSession, client_id: uuid.UUID, on: dt.date) -> set[str]:
    """Regions holding a responsibility for the client on ``on`` or from a later date already recorded."""
    return {period.region for period in await session.exec(running_periods([client_id], on)) if period.region}


def holders_of(periods: dict[str, ResponsibilityPeriod]) -> Holders:
    organising = periods[ORGANISING].region
    assert organising is not None
    residence = periods.get(RESIDENCE)
    return Holders(organising=organising, residence=residence.region if residence else None)


def running(on: dt.date) -> ColumnElement[bool]:
    """SQL: the assignment is in force on ``on`` or begins later, and has not been retracted."""
    return col(Assignment.retracted_at).is_(None) & (
        col(Assignment.valid_to).is_(None) | (col(Assignment.valid_to) > on)
    )


async def running_assignments(session: AsyncSession, client_id: uuid.UUID, on: dt.date) -> Sequence[Assignment]:
    """The client's assignments still running on ``on``: in force then, or starting later."""
    statement = select(Assignment).where(Assignment.client_id == client_id, running(on))
    return (await session.exec(statement.order_by(col(Assignment.valid_from)))).all()


Rows = tuple[list[ResponsibilityPeriod], list[Assignment], list[ComplianceGap]]
ALL_ROWS = "silta.all_rows"  # transaction cache: client id -> its Rows, kept complete by the session's flushes
TIMELINE = (ResponsibilityPeriod, Assignment, ComplianceGap)
TIMELINE_TABLES = frozenset(model.__tablename__ for model in TIMELINE)


async def all_rows(session: AsyncSession, client_id: uuid.UUID) -> Rows:
    """Every period, assignment and gap ever recorded for a client (its history is small).

    Read once per transaction: a write reads them to check its rules and again to reconcile the
    gaps and to publish its feed events. The lists stay what a new read would return: the
    session's own new rows join them when flushed, its changed rows are the very objects listed,
    and a bulk statement on these tables, a commit or a rollback (whose end releases the client's
    lock, so that others may write) forgets them. A write calls it only once it holds the client's
    row lock (``client_for(..., for_update=True)``): rows read before it could be outdated by then.
    """
    known: dict[uuid.UUID, Rows] = session.info.setdefault(ALL_ROWS, {})
    if client_id not in known:
        read = [(await session.exec(statement, params={"client_id": client_id})).all() for statement in _ALL_ROWS]
        known[client_id] = (list(read[0]), list(read[1]), list(read[2]))  # type: ignore[arg-type]
    return known[client_id]


# every row of the client (``client_id``), built once
PERIODS_OF = select(ResponsibilityPeriod).where(ResponsibilityPeriod.client_id == bindparam("client_id"))
ASSIGNMENTS_OF = select(Assignment).where(Assignment.client_id == bindparam("client_id"))
GAPS_OF = select(ComplianceGap).where(ComplianceGap.client_id == bindparam("client_id"))
_ALL_ROWS = (PERIODS_OF, ASSIGNMENTS_OF, GAPS_OF)  # as TIMELINE


def known_periods(session: Session, client_id: uuid.UUID) -> list[ResponsibilityPeriod] | None:
    """The client's periods if ``all_rows`` read them in this transaction (else None: read them)."""
    rows: Rows | None = session.info.get(ALL_ROWS, {}).get(client_id)
    return rows[0] if rows is not None else None


@event.listens_for(Session, "after_flush")
def _keep_rows_complete(session: Session, _context: object) -> None:
    known: dict[uuid.UUID, Rows] = session.info.get(ALL_ROWS, {})
    if not known:
        return
    for row in session.new:  # still the flushed rows' set in after_flush
        if isinstance(row, TIMELINE) and row.client_id in known:
            known[row.client_id][TIMELINE.index(type(row))].append(row)  # type: ignore[arg-type]
    for row in session.deleted:
        if isinstance(row, TIMELINE):
            known.pop(row.client_id, None)


@event.listens_for(Session, "do_orm_execute")
def _forget_rows_on_bulk_writes(state: ORMExecuteState) -> None:
    if state.is_select or not state.session.info.get(ALL_ROWS):
        return
    table = getattr(state.statement, "table", None)  # none (text and the like): forget them, to be safe
    if table is None or getattr(table, "name", None) in TIMELINE_TABLES:
        state.session.info.pop(ALL_ROWS, None)


@event.listens_for(Session, "after_transaction_end")
def _forget_rows(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None or transaction.nested:  # a flush's own subtransaction keeps them
        session.info.pop(ALL_ROWS, None)


async def region(session: AsyncSession, code: str) -> Region:
    return found_region(await session.get(Region, code), code)


def found_region(found: Region | None, code: str) -> Region:
    if found is None:
        raise NotFound(f"region {code} not found", code="region_not_found")
    return found


def organiser(region: Region) -> Region:
    """The region, if it organises aftercare (the others cannot register clients or have workers)."""
    if not region.organiser:
        raise Unprocessable(f"region {region.code} organises no aftercare", code="unknown_region")
    return region


def in_force(periods: Iterable[ResponsibilityPeriod], on: dt.date) -> dict[str, ResponsibilityPeriod]:
    """``periods_on`` for periods already loaded: what ``running_periods`` selects, then ``first_of_each``."""
    return first_of_each(
        period
        for period in periods
        if period.retracted_at is None and (period.valid_to is None or period.valid_to > on)
    )
