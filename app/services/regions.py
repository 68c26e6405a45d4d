"""Regions, their settings, municipalities, and resolving where a client lives."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain import aftercare
from app.domain import responsibility as rules
from app.domain.access import Caller
from app.errors import Conflict, NotFound, ValidationFailed
from app.models.caseload import RegionSettingsVersion
from app.models.client import Client, ResidenceIn, ResponsibilityPeriod
from app.models.common import utcnow
from app.models.region import (
    Municipality,
    MunicipalityPublic,
    Region,
    RegionPublic,
    RegionSettings,
    RegionSettingsUpdate,
)
from app.services import state
from app.services.audit import record_change, snapshot
from app.services.clock import today

ORGANISERS = "silta.organisers"  # session cache of organiser_codes (reference data, changed only by migrations)


def region_public(region: Region) -> RegionPublic:
    return RegionPublic(
        code=region.code,
        name_fi=region.name_fi,
        name_sv=region.name_sv,
        name_en=region.name_en,
        settings=RegionSettings(
            grace_days=region.grace_days,
            aftercare_end_age=region.aftercare_end_age,
            caseload_targets=region.caseload_targets,
            caseload_weights=region.caseload_weights,
        ),
    )


async def list_regions(session: AsyncSession) -> list[RegionPublic]:
    """The 22 organising regions (Åland is outside the reform)."""
    rows = await session.exec(select(Region).where(col(Region.organiser).is_(True)).order_by(col(Region.code)))
    return [region_public(region) for region in rows]


async def get_region(session: AsyncSession, code: str) -> RegionPublic:
    region = await state.region(session, code)
    if not region.organiser:
        raise NotFound(f"region {code} not found", code="region_not_found")
    return region_public(region)


async def get_municipality(session: AsyncSession, code: str) -> MunicipalityPublic:
    found = await session.get(Municipality, code)
    if found is None:
        raise NotFound(f"municipality {code} not found", code="municipality_not_found")
    return MunicipalityPublic(
        code=found.code,
        name_fi=found.name_fi,
        region=found.region_code,
        classification_year=found.classification_year,
    )


async def organiser_codes(session: AsyncSession) -> set[str]:
    """The regions that organise aftercare (reference data: read once per session)."""
    cached = session.info.get(ORGANISERS)
    if cached is None:
        cached = set((await session.exec(select(Region.code).where(col(Region.organiser).is_(True)))).all())
        session.info[ORGANISERS] = cached
    return set(cached)


async def resolve_residence(session: AsyncSession, data: ResidenceIn) -> tuple[str | None, str | None, str | None]:
    """(region, municipality, outside) of a residence given by region, municipality or outside."""
    municipality = await session.get(Municipality, data.residence_municipality) if data.residence_municipality else None
    return residence_of(data, municipality, await organiser_codes(session))


def residence_of(
    data: ResidenceIn, municipality: Municipality | None, organisers: set[str]
) -> tuple[str | None, str | None, str | None]:
    """``resolve_residence`` with the given municipality's row (None if unknown) and the organising regions."""
    return rules.resolve_residence(
        region=data.residence_region,
        municipality=data.residence_municipality,
        outside=data.residence_outside,
        municipality_region=municipality.region_code if municipality else None,
        organiser_regions=organisers,
    )


async def update_settings(session: AsyncSession, caller: Caller, code: str, data: RegionSettingsUpdate) -> RegionPublic:
    """Change a region's settings; a new age limit moves its active clients' aftercare end."""
    caller.require_region_manager(code)
    region = await state.region(session, code)
    if not region.organiser:
        raise NotFound(f"region {code} not found", code="region_not_found")
    before = snapshot(region)
    changes = data.model_dump(exclude_unset=True, mode="json")
    if any(value is None for value in changes.values()):
        raise ValidationFailed(f"{', '.join(k for k, v in changes.items() if v is None)} cannot be null")
    for field in ("caseload_targets", "caseload_weights"):
        if field in changes:
            changes[field] = {**getattr(region, field), **changes[field]}
    changes = {field: value for field, value in changes.items() if getattr(region, field) != value}
    if not changes:
        return region_public(region)  # nothing changes, nothing logged
    for field, value in changes.items():
        setattr(region, field, value)
    region.updated_at = utcnow()
    session.add(region)

    session.add(
        RegionSettingsVersion(
            region_code=region.code,
            valid_from=today(),
            grace_days=region.grace_days,
            aftercare_end_age=region.aftercare_end_age,
            caseload_targets=region.caseload_targets,
            caseload_weights=region.caseload_weights,
            recorded_by=caller.subject,
        )
    )
    record_change(session, caller, action="region.settings_updated", entity=region, client_id=None, before=before)
    if "aftercare_end_age" in changes:
        await _move_aftercare_ends(session, caller, region)
    await session.commit()
    return region_public(region)


async def _move_aftercare_ends(session: AsyncSession, caller: Caller, region: Region) -> None:
    """Recompute the end of aftercare for the region's clients not yet ended (no early end).

    A new limit applies from today: a client already past it ends today, never in the past.
    A client whose aftercare has not begun and who would be past the new limit by then is
    refused with 409, so the region ends or corrects that registration first.
    """
    on = today()
    clients = await session.exec(
        select(Client)
        .join(ResponsibilityPeriod, col(ResponsibilityPeriod.client_id) == Client.id)
        .where(
            ResponsibilityPeriod.responsibility == rules.ORGANISING,
            ResponsibilityPeriod.region == region.code,
            col(ResponsibilityPeriod.valid_to).is_(None),
            col(ResponsibilityPeriod.retracted_at).is_(None),
            col(Client.end_date).is_(None),
            col(Client.aftercare_end) >= on,
        )
        .order_by(col(Client.id))
        .with_for_update()
    )
    blocked = []
    for client in clients:
        end = max(aftercare.aftercare_end(client.birth_date, region.aftercare_end_age), on)
        if end < client.aftercare_start:
            blocked.append(str(client.id))
            continue
        if end != client.aftercare_end:
            before = snapshot(client)
            client.aftercare_end, client.updated_at = end, utcnow()
            client.version += 1
            session.add(client)
            record_change(
                session,
                caller,
                action="client.aftercare_end_changed",
                entity=client,
                client_id=client.id,
                before=before,
            )
    if blocked:
        raise Conflict(
            f"{len(blocked)} client(s) would be past the new age limit before their aftercare begins",
            code="clients_past_age_limit",
            client_ids=blocked,
        )
