"""Public views of clients, honouring address protection."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Date, Row, String, Uuid, bindparam, func, literal, or_
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

# The single-client view's statements, built once: SQLAlchemy compiles each once and reuses it, and
# they return plain rows (no ORM instances). A client read is the most frequent request there is.
_CLIENT_ID = bindparam("client_id", type_=Uuid())
_REGION = bindparam("region", type_=String())
_ON = bindparam("on", type_=Date())
_CLIENTS = Client.__table__  # type: ignore[attr-defined]
_PERIODS = ResponsibilityPeriod.__table__  # type: ignore[attr-defined]
_GAPS = ComplianceGap.__table__  # type: ignore[attr-defined]
_EXTERNAL = ClientExternalId.__table__  # type: ignore[attr-defined]
READ_NATIONAL = select(_CLIENTS, literal(True).label("full_view")).where(_CLIENTS.c.id == _CLIENT_ID)
READ_REGIONAL = select(_CLIENTS, held(_REGION).label("full_view")).where(_CLIENTS.c.id == _CLIENT_ID, involved(_REGION))
PERIODS_ON = (
    select(
        _PERIODS.c.responsibility,
        _PERIODS.c.region,
        _PERIODS.c.municipality,
        _PERIODS.c.residence_outside,
        _PERIODS.c.valid_from,
    )
    .where(
        _PERIODS.c.client_id == _CLIENT_ID,
        _PERIODS.c.retracted_at.is_(None),
        or_(_PERIODS.c.valid_to.is_(None), _PERIODS.c.valid_to > _ON),
    )
    .order_by(_PERIODS.c.valid_from.desc())
)
GAPS_ON = select(_GAPS).where(
    _GAPS.c.client_id == _CLIENT_ID,
    _GAPS.c.since <= _ON,
    or_(_GAPS.c.closed_on.is_(None), _GAPS.c.closed_on > _ON),
)
EXTERNAL_IDS = select(_EXTERNAL.c.system, _EXTERNAL.c.external_id).where(_EXTERNAL.c.client_id == _CLIENT_ID)


def summary(
    client: Client | Row[Any], caller: Caller, periods: dict[str, ResponsibilityPeriod], open_gaps: int, *, full: bool
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
    that hold or held the client), asked in the same statement that reads the row.
    """
    caller.require(SYSTEM, COORDINATOR, AUDITOR)
    connection = await session.connection()
    if caller.national:
        found = (await connection.execute(READ_NATIONAL, {"client_id": client_id})).first()
    else:
        found = (await connection.execute(READ_REGIONAL, {"client_id": client_id, "region": caller.region})).first()
    if found is None:
        raise NotFound("client not found", code="client_not_found")
    session.info.setdefault(FULLY_INVOLVED, {})[client_id] = bool(found.full_view)
    return await client_public(session, caller, found)


async def client_public(session: AsyncSession, caller: Caller, client: Client | Row[Any]) -> ClientPublic:
    """The full view of one client, with its open gaps and external ids."""
    on = today()
    connection = await session.connection()
    known = {"client_id": client.id, "on": on}
    periods: dict[str, Any] = state.first_of_each((await connection.execute(PERIODS_ON, known)).all())
    note_organisers(session, {client.id: periods[ORGANISING].region})
    gaps = (await connection.execute(GAPS_ON, known)).all()
    full = await fully_involved(session, caller, client.id)
    base = summary(client, caller, periods, len(gaps), full=full)
    external = (await connection.execute(EXTERNAL_IDS, {"client_id": client.id})).all() if full else []
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
