"""Public views of clients, honouring address protection."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain import aftercare
from app.domain.access import Caller
from app.domain.compliance import compliance_status
from app.domain.responsibility import ORGANISING, RESIDENCE
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
from app.services.access import fully_involved
from app.services.audit import note_organisers
from app.services.clock import today
from app.services.compliance import gap_in_force, gap_public
from app.services.vault import vault_of


def summary(
    client: Client, caller: Caller, periods: dict[str, ResponsibilityPeriod], open_gaps: int, *, full: bool
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


def identity_code(session: AsyncSession, client: Client) -> str:
    """The client's identity code, decrypted for a caller entitled to the full view."""
    return vault_of(session).open(client.personal_id_hash, client.personal_id_cipher, client.personal_id_key)


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
