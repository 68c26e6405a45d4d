"""Auditors' questions: who changed what, who saw which client, to whom it was disclosed.

Region-scoped auditors see entries about their region's clients (held now or before) and
entries made by their own region; national auditors see everything. Each answer that names
clients is itself access-logged by the route.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, or_, true
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import ADMIN, AUDITOR, COORDINATOR, Caller
from app.errors import Forbidden, ValidationFailed
from app.models.audit import AccessEntry, AccessEntryClient, ChainLink, ChangeEvent, ChangeEventClient, Disclosure
from app.models.client import ResponsibilityPeriod
from app.services.access import client_for, held
from app.services.pagination import Page, PageParams, paginate
from app.services.spreadsheet import json_line

TWO_YEARS = dt.timedelta(days=730)
# each log that names many clients: its per-client table, and how a row of it joins its entry
_CLIENT_LINKS: dict[Any, tuple[Any, ColumnElement[bool]]] = {
    ChangeEvent: (ChangeEventClient, col(ChangeEventClient.event_id) == ChangeEvent.id),
    AccessEntry: (AccessEntryClient, col(AccessEntryClient.entry_id) == AccessEntry.id),
}


def require_auditor(caller: Caller) -> None:
    caller.require(AUDITOR)


def require_chain_reader(caller: Caller) -> None:
    """Verifying the chain shows no personal data: national auditors and the operator."""
    if not (caller.national or caller.has(ADMIN)):
        raise Forbidden("the chain is verified by national auditors and the operator")


def _window(column: Any, since: dt.datetime | None, until: dt.datetime | None) -> list[ColumnElement[bool]]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


@dataclass(frozen=True)
class LogFilter:
    """What every log listing can be narrowed to: one client, one actor, entries in [since, until)."""

    client_id: uuid.UUID | None = None
    actor: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _equal(*pairs: tuple[Any, Any]) -> list[ColumnElement[bool]]:
    """``column == value`` for each (column, value) whose value is given: None or "" filter nothing."""
    return [column == value for column, value in pairs if value]


def _names_client(model: Any, condition: Any) -> ColumnElement[bool]:
    """The entry names a client (a row of its per-client table) that meets ``condition(client_id)``."""
    link, joins = _CLIENT_LINKS[model]
    return exists(select(link.client_id).where(joins, condition(link.client_id)))


def _readable(caller: Caller, model: Any, filters: LogFilter) -> Any:
    """Change or access entries the caller may read, narrowed by ``filters``.

    A region-scoped auditor reads the entries made by its region and those naming a client the
    region holds or held.
    """
    statement = select(model).where(*_window(col(model.occurred_at), filters.since, filters.until))
    region = caller.region
    if not caller.national:
        assert region is not None
        statement = statement.where(
            or_(col(model.actor_region) == region, _names_client(model, lambda client: held(region, client)))
        )
    if filters.client_id is not None:
        statement = statement.where(_names_client(model, lambda client: client == filters.client_id))
    return statement.where(*_equal((model.actor, filters.actor)))


async def changes(
    session: AsyncSession,
    caller: Caller,
    filters: LogFilter,
    *,
    action: str | None,
    entity_type: str | None = None,
    page: PageParams,
) -> Page[ChangeEvent]:
    require_auditor(caller)
    statement = _readable(caller, ChangeEvent, filters)
    statement = statement.where(*_equal((ChangeEvent.action, action), (ChangeEvent.entity_type, entity_type)))
    return await _newest_first(session, statement, ChangeEvent, page)


async def accesses(
    session: AsyncSession,
    caller: Caller,
    filters: LogFilter,
    *,
    region: str | None,
    purpose: str | None,
    page: PageParams,
) -> Page[AccessEntry]:
    require_auditor(caller)
    statement = _readable(caller, AccessEntry, filters)
    statement = statement.where(*_equal((AccessEntry.actor_region, region), (AccessEntry.purpose, purpose)))
    return await _newest_first(session, statement, AccessEntry, page)


def _about(client_id: uuid.UUID) -> ColumnElement[bool]:
    return _names_client(AccessEntry, lambda client: client == client_id)


async def only_own_clients(session: AsyncSession, caller: Caller, items: list[Any]) -> list[Any]:
    """A region-scoped auditor sees, in each access entry, only the clients its region holds or held."""
    if caller.national or caller.region is None:
        return items
    named = {value for item in items for value in item.client_ids}
    held_ids = {
        str(client_id)
        for client_id in await session.exec(
            select(ResponsibilityPeriod.client_id).where(
                col(ResponsibilityPeriod.client_id).in_([uuid.UUID(value) for value in named]),
                ResponsibilityPeriod.region == caller.region,
                col(ResponsibilityPeriod.retracted_at).is_(None),
            )
        )
    }
    return [item.model_copy(update={"client_ids": [c for c in item.client_ids if c in held_ids]}) for item in items]


async def disclosures(
    session: AsyncSession,
    caller: Caller,
    filters: LogFilter,
    *,
    to_region: str | None,
    from_region: str | None,
    page: PageParams,
) -> Page[Disclosure]:
    require_auditor(caller)
    statement = select(Disclosure).where(*_window(col(Disclosure.occurred_at), filters.since, filters.until))
    if not caller.national:
        statement = statement.where(
            or_(col(Disclosure.from_region) == caller.region, col(Disclosure.to_region) == caller.region)
        )
    statement = statement.where(
        *_equal(
            (Disclosure.client_id, filters.client_id),
            (Disclosure.actor, filters.actor),
            (Disclosure.to_region, to_region),
            (Disclosure.from_region, from_region),
        )
    )
    return await _newest_first(session, statement, Disclosure, page)


async def _newest_first(session: AsyncSession, statement: Any, model: Any, page: PageParams) -> Page[Any]:
    """Pages of entries, newest first (ids grow with insertion)."""
    result = await paginate(
        session,
        statement,
        keys=[model.id],
        key_of=lambda entry: (entry.id,),
        parse=[int],
        page=page,
        descending=True,
    )
    return Page(items=list(result.items), next_cursor=result.next_cursor)


async def access_report(
    session: AsyncSession,
    caller: Caller,
    client_id: uuid.UUID,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    page: PageParams,
) -> tuple[dt.datetime, dt.datetime, Page[tuple[AccessEntry, list[Disclosure]]]]:
    """Who processed the client's data and to whom it was disclosed (Client Data Act 703/2023, § 11)."""
    caller.require(AUDITOR, COORDINATOR)
    await client_for(session, caller, client_id)  # national auditors, or a region holding or having held it
    until = until or dt.datetime.now(dt.UTC)
    since = since or until - TWO_YEARS
    if since >= until:
        raise ValidationFailed("since must be before until")
    statement = select(AccessEntry).where(_about(client_id), *_window(col(AccessEntry.occurred_at), since, until))
    result = await _newest_first(session, statement, AccessEntry, page)
    ids = [entry.id for entry in result.items]
    found: dict[int, list[Disclosure]] = {}
    for disclosure in await session.exec(
        select(Disclosure).where(col(Disclosure.access_id).in_(ids), Disclosure.client_id == client_id)
    ):
        found.setdefault(disclosure.access_id, []).append(disclosure)
    rows = [(entry, found.get(entry.id or 0, [])) for entry in result.items]
    return since, until, Page(items=rows, next_cursor=result.next_cursor)


EXPORTABLE: dict[str, Any] = {"change": ChangeEvent, "access": AccessEntry, "disclosure": Disclosure}


async def export(
    session: AsyncSession, log: str, since: dt.datetime | None, until: dt.datetime | None
) -> AsyncIterator[str]:
    """JSON Lines of one log with each entry's chain position and hash, oldest first, in batches."""
    model = EXPORTABLE[log]
    after = 0
    while True:
        statement = (
            select(model, ChainLink.position, ChainLink.chain_hash)
            .outerjoin(ChainLink, (col(ChainLink.log) == log) & (col(ChainLink.entry_id) == model.id))
            .where(model.id > after, *_window(model.occurred_at, since, until))
            .order_by(model.id)
            .limit(1000)
        )
        rows = (await session.exec(statement)).all()
        if not rows:
            return
        for entry, position, chain_hash in rows:
            record = entry.model_dump(mode="json")
            record.update({"log": log, "chain_position": position, "chain_hash": chain_hash})
            yield json_line(record, sort_keys=True)
        after = rows[-1][0].id


async def export_clients(
    session: AsyncSession, log: str, since: dt.datetime | None, until: dt.datetime | None
) -> list[uuid.UUID]:
    """The clients an export of ``log`` names (for the export's own access entry)."""
    if log == "disclosure":
        statement: Any = select(Disclosure.client_id).where(*_window(col(Disclosure.occurred_at), since, until))
    elif log == "access":
        statement = (
            select(AccessEntryClient.client_id)
            .join(AccessEntry, col(AccessEntry.id) == AccessEntryClient.entry_id)
            .where(*_window(col(AccessEntry.occurred_at), since, until))
        )
    else:
        statement = (
            select(ChangeEventClient.client_id)
            .join(ChangeEvent, col(ChangeEvent.id) == ChangeEventClient.event_id)
            .where(*_window(col(ChangeEvent.occurred_at), since, until))
        )
    return list((await session.exec(statement.distinct())).all())


def export_scope(caller: Caller) -> ColumnElement[bool]:
    """Exports are whole logs: national auditors only."""
    if not caller.national:
        raise Forbidden("log exports are for national auditors")
    return true()
