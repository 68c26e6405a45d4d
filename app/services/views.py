"""Public views of clients, honouring address protection."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import JSON, Date, Row, Select, String, Uuid, bindparam, func, literal, or_, type_coerce
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain import aftercare
from app.domain.access import AUDITOR, COORDINATOR, SYSTEM, Caller
from app.domain.compliance import compliance_status
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import NotFound
from app.models.assignment import ComplianceGap
from app.models.client import (
    Client,
    ClientExternalId,
    ClientPublic,
    ClientSummary,
    ExternalIdPublic,
    ResponsibilityPeriod,
)
from app.models.common import ResidenceOutside, SupportLevel
from app.services import state
from app.services.access import FULLY_INVOLVED, fully_involved, held, involved
from app.services.audit import note_organisers
from app.services.clock import today
from app.services.compliance import gap_in_force, gap_public
from app.services.vault import vault_of

# The single-client view in one statement: the row, whether the caller's region holds or held the client,
# and its running periods, gaps in force and external ids as JSON arrays. Built once per dialect and
# caller kind, so SQLAlchemy compiles it once; it returns plain rows (no ORM instances). A client read
# is the most frequent request there is.
_CLIENT_ID = bindparam("client_id", type_=Uuid())
_REGION = bindparam("region", type_=String())
_ON = bindparam("on", type_=Date())
_CLIENTS = Client.__table__  # type: ignore[attr-defined]
_PERIODS = ResponsibilityPeriod.__table__  # type: ignore[attr-defined]
_GAPS = ComplianceGap.__table__  # type: ignore[attr-defined]
_EXTERNAL = ClientExternalId.__table__  # type: ignore[attr-defined]


class _Period(NamedTuple):
    responsibility: str
    region: str | None
    municipality: str | None
    residence_outside: str | None
    valid_from: dt.date


class _Gap(NamedTuple):
    id: uuid.UUID
    client_id: uuid.UUID
    responsibility: str
    region: str
    since: dt.date
    due: dt.date
    cause: str


def _json_rows(dialect: str, *columns: Any) -> Any:
    """SQL: the rows' ``columns`` as one JSON array of arrays (NULL or [] when there are none)."""
    if dialect == "postgresql":
        return func.json_agg(func.json_build_array(*columns))
    return func.json_group_array(func.json_array(*columns))


@cache
def card_statement(dialect: str, national: bool) -> Select[Any]:
    """The client (``client_id``) with ``full_view``, ``periods``, ``gaps`` (on ``on``) and ``external``;
    for a region (``region``) only if it is involved (``access.involved``)."""
    p, g, e = _PERIODS.c, _GAPS.c, _EXTERNAL.c
    periods = select(
        _json_rows(dialect, p.responsibility, p.region, p.municipality, p.residence_outside, p.valid_from)
    ).where(p.client_id == _CLIENTS.c.id, p.retracted_at.is_(None), or_(p.valid_to.is_(None), p.valid_to > _ON))
    gaps = select(_json_rows(dialect, g.id, g.client_id, g.responsibility, g.region, g.since, g.due, g.cause)).where(
        g.client_id == _CLIENTS.c.id, g.since <= _ON, or_(g.closed_on.is_(None), g.closed_on > _ON)
    )
    external = select(_json_rows(dialect, e.system, e.external_id)).where(e.client_id == _CLIENTS.c.id)
    statement = (
        sa_select(_CLIENTS)
        .add_columns(
            (literal(True) if national else held(_REGION)).label("full_view"),
            type_coerce(periods.scalar_subquery(), JSON).label("periods"),
            type_coerce(gaps.scalar_subquery(), JSON).label("gaps"),
            type_coerce(external.scalar_subquery(), JSON).label("external"),
        )
        .where(_CLIENTS.c.id == _CLIENT_ID)
    )
    return statement if national else statement.where(involved(_REGION))


date = dt.date.fromisoformat


def _periods(rows: list[list[Any]] | None) -> dict[str, Any]:
    return state.first_of_each(
        _Period(responsibility, region, municipality, outside, dt.date.fromisoformat(valid_from))
        for responsibility, region, municipality, outside, valid_from in rows or []
    )


def _gaps(rows: list[list[Any]] | None) -> list[_Gap]:
    return [
        _Gap(uuid.UUID(gap), uuid.UUID(client), responsibility, region, date(since), date(due), cause)
        for gap, client, responsibility, region, since, due, cause in rows or []
    ]


def summary(
    client: Client | Row[Any], caller: Caller, periods: dict[str, Any], open_gaps: int, *, full: bool
) -> ClientSummary:
    """The list view of a client; the municipality only to regions that hold or held it (``full``),
    and of a protected address only to the residence region."""
    on = today()
    residence = periods.get(RESIDENCE)
    show_municipality = full and (
        not client.address_protection
        or (residence is not None and residence.region is not None and caller.region == residence.region)
    )
    status = aftercare.status(client.aftercare_start, client.aftercare_end, on)
    return ClientSummary(
        id=client.id,
        first_name=client.first_name,
        last_name=client.last_name,
        birth_date=client.birth_date,
        organising_region=periods[ORGANISING].region or "",
        residence_region=residence.region if residence else None,
        residence_municipality=residence.municipality if residence and show_municipality else None,
        residence_outside=ResidenceOutside(residence.residence_outside)
        if residence and residence.residence_outside
        else None,
        address_protection=client.address_protection,
        support_level=SupportLevel(client.support_level),
        aftercare_start=client.aftercare_start,
        aftercare_end=client.aftercare_end,
        status=status,
        compliance=compliance_status(active=status != "ended", missing=open_gaps),
    )


def identity_code(session: AsyncSession, client: Client | Row[Any]) -> str:
    """The client's identity code, decrypted for a caller entitled to the full view."""
    return vault_of(session).open(client.personal_id_hash, client.personal_id_cipher, client.personal_id_key)


async def client_card(session: AsyncSession, caller: Caller, client_id: uuid.UUID) -> ClientPublic:
    """``GET /v1/clients/{id}``: the client if the caller's region is involved (else 404), in its view.

    The access rule is ``access.client_for``'s (read: any involvement, full view only to regions
    that hold or held the client), asked in the same statement that reads the row and all it shows.
    """
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    on = today()
    connection = await session.connection()
    statement = card_statement(connection.dialect.name, caller.national)
    found = (await connection.execute(statement, {"client_id": client_id, "region": caller.region, "on": on})).first()
    if found is None:
        raise NotFound("client not found", code="client_not_found")
    periods = _periods(found.periods)
    note_organisers(session, {client_id: periods[ORGANISING].region})
    session.info.setdefault(FULLY_INVOLVED, {})[client_id] = full = bool(found.full_view)
    gaps = _gaps(found.gaps)
    base = summary(found, caller, periods, len(gaps), full=full)
    return ClientPublic(
        **base.model_dump(),
        access="full" if full else "request",
        personal_id=identity_code(session, found) if full else None,
        end_reason=found.end_reason,
        external_ids=[ExternalIdPublic(system=system, id=ref) for system, ref in found.external or []] if full else [],
        missing=[gap_public(gap, on) for gap in gaps] if base.status != "ended" else [],
        created_at=found.created_at,
        updated_at=found.updated_at,
    )


async def client_public(session: AsyncSession, caller: Caller, client: Client) -> ClientPublic:
    """The full view of one client, with its open gaps and external ids."""
    on = today()
    periods = await state.periods_on(session, client.id, on)
    note_organisers(session, {client.id: periods[ORGANISING].region})
    gaps = (
        await session.exec(select(ComplianceGap).where(ComplianceGap.client_id == client.id, gap_in_force(on)))
    ).all()
    full = await fully_involved(session, caller, client.id)
    base = summary(client, caller, periods, len(gaps), full=full)
    external: Iterable[ClientExternalId] = (
        await session.exec(select(ClientExternalId).where(ClientExternalId.client_id == client.id)) if full else []
    )
    return ClientPublic(
        **base.model_dump(),
        access="full" if full else "request",
        personal_id=identity_code(session, client) if full else None,
        end_reason=client.end_reason,
        external_ids=[ExternalIdPublic(system=row.system, id=row.external_id) for row in external],
        missing=[gap_public(gap, on) for gap in gaps] if base.status != "ended" else [],
        created_at=client.created_at,
        updated_at=client.updated_at,
    )


async def summaries(session: AsyncSession, caller: Caller, clients: Sequence[Client]) -> list[ClientSummary]:
    """List views of many clients in three queries, whatever their number."""
    ids = [client.id for client in clients]
    running: dict[uuid.UUID, list[ResponsibilityPeriod]] = defaultdict(list)
    for row in await session.exec(state.running_periods(ids, today())):
        running[row.client_id].append(row)
    periods = {client_id: state.first_of_each(rows) for client_id, rows in running.items()}
    note_organisers(session, {client_id: chosen[ORGANISING].region for client_id, chosen in periods.items()})
    counted = await session.exec(
        select(ComplianceGap.client_id, func.count())
        .where(col(ComplianceGap.client_id).in_(ids), gap_in_force(today()))
        .group_by(col(ComplianceGap.client_id))
    )
    gaps = dict(counted.all())
    held: set[uuid.UUID] = set(ids)
    if not caller.national:
        rows = await session.exec(
            select(ResponsibilityPeriod.client_id).where(
                col(ResponsibilityPeriod.client_id).in_(ids),
                ResponsibilityPeriod.region == caller.region,
                col(ResponsibilityPeriod.retracted_at).is_(None),
            )
        )
        held = set(rows.all())
    return [
        summary(client, caller, periods[client.id], gaps.get(client.id, 0), full=client.id in held)
        for client in clients
    ]
