"""Access as a query filter: every client read and write goes through ``client_for``.

A caller only ever sees clients its region is involved in (holds or held a responsibility,
or has an open coordination request about); anything else is 404, never 403.
"""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

from sqlalchemy import BindParameter, ColumnElement, bindparam, event, exists, or_, true
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db import plain_rows
from app.domain.access import AUDITOR, COORDINATOR, SYSTEM, Caller
from app.errors import NotFound
from app.models.client import Client, ResponsibilityPeriod
from app.models.cost import CostDecision
from app.models.pair import WorkPair
from app.models.request import CoordinationRequest
from app.services.audit import AuditedSession


def held(region: str | BindParameter[str], client_id: Any = Client.id) -> ColumnElement[bool]:
    """SQL: the region holds or held a responsibility for the client (full involvement)."""
    period = ResponsibilityPeriod
    return exists(
        select(period.id).where(
            period.client_id == client_id,
            period.region == region,
            col(period.retracted_at).is_(None),
        )
    )


def involved(region: str | BindParameter[str]) -> ColumnElement[bool]:
    """SQL: the client row's region involvement: held, or asked about it in an open request."""
    request = CoordinationRequest
    return or_(
        held(region),
        exists(
            select(request.id).where(
                col(request.client_id) == Client.id,
                col(request.status) == "open",
                or_(col(request.to_region) == region, col(request.from_region) == region),
            )
        ),
    )


FULLY_INVOLVED = "silta.fully_involved"  # session cache: client id -> the caller's region holds or held it


@event.listens_for(AuditedSession, "after_flush")
def _forget_involvement(session: Session, _context: object) -> None:
    """A write may change who holds a client: what reads learnt before it no longer counts."""
    session.info.pop(FULLY_INVOLVED, None)


async def fully_involved(session: AsyncSession, caller: Caller, client_id: uuid.UUID) -> bool:
    """The caller sees the whole client (national, or its region holds or held a responsibility)."""
    if caller.national:
        return True
    if caller.region is None:
        return False
    known: dict[uuid.UUID, bool] = session.info.setdefault(FULLY_INVOLVED, {})
    if client_id not in known:
        known[client_id] = bool((await session.exec(select(held(caller.region, client_id)))).one())
    return known[client_id]


def readable(caller: Caller) -> ColumnElement[bool]:
    """SQL condition for the clients this caller may see at all (403 for roles that read none)."""
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if caller.national:
        return true()
    assert caller.region is not None
    return involved(caller.region)


def fully_readable(caller: Caller) -> ColumnElement[bool]:
    """SQL condition for the clients this caller sees whole: held or formerly held by its region.

    A region that is only asked about a client (an open coordination request) sees the minimal
    view (``views.client_public``) and nothing else: no history, workers, assignments or pairs.
    """
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if caller.national:
        return true()
    assert caller.region is not None
    return held(caller.region)


async def client_for(
    session: AsyncSession,
    caller: Caller,
    client_id: uuid.UUID,
    *,
    for_update: bool = False,
    full: bool | None = None,
) -> Client:
    """The client if the caller may see it, else 404; ``for_update`` locks the row for a write.

    Reads need full involvement (``full``, the default for reads); writes accept any visible
    client and leave the rule of who may change what to the service (403 ``not_responsible``).
    """
    whole = (not for_update) if full is None else full
    params = _params(caller, client_id)
    if for_update:
        caller.writer_region()
    statement = _CLIENT_FOR[(for_update, whole, caller.national)]
    if for_update:
        locked = (await session.exec(statement, params=params)).first()
        if locked is None:
            raise NotFound("client not found", code="client_not_found")
        return locked
    return (await _read(session, statement, params))[0]


class Presence(NamedTuple):
    """Whether the client has any coordination request, work pair or cost decision at all, in any
    state: a read that finds none need not ask for them (most clients have no cost decision, more
    than half no pair)."""

    requests: bool
    pairs: bool
    decisions: bool


async def client_with_presence(session: AsyncSession, caller: Caller, client_id: uuid.UUID) -> tuple[Any, Presence]:
    """``client_for`` for a full read, with the client's ``Presence`` learnt in the same statement.

    The client is a plain row of its id and aftercare dates, all that ``responsibility?as_of`` reads
    of it: no ORM instance to build for a read (issue 9)."""
    rows = await plain_rows(session, _WITH_PRESENCE[caller.national], _params(caller, client_id))
    if not rows:
        raise NotFound("client not found", code="client_not_found")
    client = rows[0]
    _note_view(session, client.id, client.full_view)
    return client, Presence(client.requests, client.pairs, client.decisions)


def _params(caller: Caller, client_id: uuid.UUID) -> dict[str, Any]:
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    if not caller.national:
        assert caller.region is not None
    return {"client_id": client_id, "region": caller.region}


async def _read(session: AsyncSession, statement: Any, params: dict[str, Any]) -> Any:
    """The row of a read statement (the client, whether the caller sees it whole, anything after), else 404."""
    found = (await session.exec(statement, params=params)).first()
    if found is None:
        raise NotFound("client not found", code="client_not_found")
    _note_view(session, found[0].id, found[1])
    return found


def _note_view(session: AsyncSession, client_id: uuid.UUID, full_view: Any) -> None:
    """Keep whether the caller sees the client whole, so that its view need not ask again."""
    session.info.setdefault(FULLY_INVOLVED, {})[client_id] = bool(full_view)


def _client_for_statement(for_update: bool, whole: bool, national: bool) -> Any:
    """``client_for``'s statement, built once with the client id and region as parameters: building
    it (with its EXISTS subqueries) and its cache key cost about 130 µs per request (issue 9)."""
    region: BindParameter[str] = bindparam("region")
    condition = true() if national else (held(region) if whole else involved(region))
    where = (Client.id == bindparam("client_id"), condition)
    if for_update:
        return select(Client).where(*where).with_for_update()
    return select(Client, true() if national else held(region)).where(*where)


_CLIENT_FOR = {
    (for_update, whole, national): _client_for_statement(for_update, whole, national)
    for for_update in (False, True)
    for whole in (False, True)
    for national in (False, True)
}


def _with_presence_statement(national: bool) -> Any:
    region: BindParameter[str] = bindparam("region")
    condition = true() if national else held(region)
    present = [
        exists(select(model.id).where(col(model.client_id) == Client.id))
        for model in (CoordinationRequest, WorkPair, CostDecision)
    ]
    dates = (col(Client.id), col(Client.aftercare_start), col(Client.aftercare_end))
    labelled = [flag.label(name) for flag, name in zip(present, Presence._fields, strict=True)]
    return select(*dates, condition.label("full_view"), *labelled).where(Client.id == bindparam("client_id"), condition)


_WITH_PRESENCE = {national: _with_presence_statement(national) for national in (False, True)}
