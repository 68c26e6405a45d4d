"""Registering, reading, searching, updating and ending clients."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import exists
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.domain import aftercare
from app.domain.access import Caller
from app.domain.personal_id import PersonalId, parse_personal_id
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import Conflict, DuplicateClient, NotResponsible, Unprocessable, ValidationFailed
from app.models.assignment import ComplianceGap
from app.models.client import (
    Client,
    ClientCreate,
    ClientEnd,
    ClientExternalId,
    ClientPublic,
    ClientSearch,
    ClientSummary,
    ClientUpdate,
    ExternalIdIn,
    ResponsibilityPeriod,
)
from app.models.common import RequestKind, RequestStatus, utcnow
from app.models.region import Region
from app.models.worker import Worker
from app.services import state
from app.services.access import client_for, fully_readable, readable
from app.services.assignments import close_assignment
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.compliance import gap_in_force, reconcile
from app.services.pagination import Page, PageParams, paginate
from app.services.regions import resolve_residence
from app.services.requests import open_request, settle_open
from app.services.vault import vault_of
from app.services.views import client_card, client_public, summaries


async def register_client(
    session: AsyncSession, caller: Caller, data: ClientCreate, *, settings: Settings
) -> ClientPublic:
    """Register a client for the caller's region (organising or residence) and open its gaps."""
    client = await register(session, caller, data, settings=settings)
    return await client_public(session, caller, client)


async def register(session: AsyncSession, caller: Caller, data: ClientCreate, *, settings: Settings) -> Client:
    """``register_client`` without the public view (imports need only the row); commits."""
    caller_region = caller.writer_region()
    pid = parse_personal_id(data.personal_id, accept_temporary=settings.accept_temporary_ids)
    organising = state.organiser(await state.region(session, data.organising_region))
    residence = await resolve_residence(session, data)
    on = today()
    new = registration(caller_region, data, pid, organising, residence, on, vault_of(session).seal(pid.code))
    client = new.client
    await _refuse_duplicate(session, caller, client.personal_id_hash)
    session.add_all([client, *new.periods, *new.external_ids])
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        await _refuse_duplicate(session, caller, client.personal_id_hash)
        raise Conflict("an external id is already linked to another client", code="duplicate_external_id") from None
    record_change(session, caller, action="client.registered", entity=client, client_id=client.id)
    await reconcile(session, caller, client, cause="registered")
    if new.request is not None:
        kind, other = new.request
        await open_request(session, caller, client, kind=kind, to_region=other, on=on)
    await session.commit()
    return client


@dataclass
class Registration:
    """The rows a registration adds, and the request it opens to the other region (kind, region)."""

    client: Client
    periods: list[ResponsibilityPeriod]
    external_ids: list[ClientExternalId]
    request: tuple[RequestKind, str] | None


def registration(
    caller_region: str,
    data: ClientCreate,
    pid: PersonalId,
    organising: Region,
    residence: tuple[str | None, str | None, str | None],
    on: dt.date,
    sealed: tuple[str, bytes, str],
) -> Registration:
    """Check a registration by the rules and build its rows (no database: imports build many at once).

    ``residence``: (region, municipality, outside) as resolved; ``sealed``: the vault's
    (hash, ciphertext, key id) of the identity code.
    """
    region, municipality, outside = residence
    if caller_region not in {organising.code, region}:
        raise NotResponsible("the caller's region must be the organising or the residence region")
    aftercare.check_registrable(pid.birth_date, organising.aftercare_end_age, data.aftercare_start, on)
    digest, cipher, key_id = sealed
    client = Client(
        personal_id_hash=digest,
        personal_id_cipher=cipher,
        personal_id_key=key_id,
        first_name=data.first_name,
        last_name=data.last_name,
        birth_date=pid.birth_date,
        support_level=data.support_level,
        address_protection=data.address_protection,
        aftercare_start=data.aftercare_start,
        aftercare_end=aftercare.aftercare_end(pid.birth_date, organising.aftercare_end_age),
    )
    periods = [
        ResponsibilityPeriod(
            client_id=client.id, responsibility=ORGANISING, region=organising.code, valid_from=data.aftercare_start
        ),
        ResponsibilityPeriod(
            client_id=client.id,
            responsibility=RESIDENCE,
            region=region,
            municipality=municipality,
            residence_outside=outside,
            valid_from=data.aftercare_start,
        ),
    ]
    external_ids = _external_id_rows(client.id, data.external_ids)
    request = None
    if region and region != organising.code:
        other = region if caller_region == organising.code else organising.code
        kind = RequestKind.assign_residence_worker if other == region else RequestKind.assign_organising_worker
        request = (kind, other)
    return Registration(client, periods, external_ids, request)


def _external_id_rows(client_id: uuid.UUID, ids: list[ExternalIdIn]) -> list[ClientExternalId]:
    if len({(item.system, item.id) for item in ids}) != len(ids):
        raise ValidationFailed("external_ids contains the same id twice")
    return [ClientExternalId(client_id=client_id, system=item.system, external_id=item.id) for item in ids]


async def _refuse_duplicate(session: AsyncSession, caller: Caller, digest: str) -> None:
    existing = (await session.exec(select(Client.id).where(Client.personal_id_hash == digest))).first()
    if existing is None:
        return
    # fully: a region only asked about the client sees it without its code, and must not learn it here
    visible = (await session.exec(select(Client.id).where(Client.id == existing, fully_readable(caller)))).first()
    raise DuplicateClient(existing_id=str(visible) if visible else None)


async def get_client(session: AsyncSession, caller: Caller, client_id: uuid.UUID) -> ClientPublic:
    return await client_card(session, caller, client_id)


async def search_clients(
    session: AsyncSession, caller: Caller, query: ClientSearch, *, settings: Settings
) -> list[ClientPublic]:
    """Find a client by identity code or by a source system's id (never in a URL).

    Only clients the caller's region holds or held are found: a region that is merely asked
    about a client must not be able to confirm whose identity code or external id it is.
    """
    statement = select(Client).where(fully_readable(caller))
    if query.personal_id and not (query.system or query.external_id):
        code = parse_personal_id(query.personal_id, accept_temporary=True).code
        statement = statement.where(Client.personal_id_hash == vault_of(session).lookup(code))
    elif query.system and query.external_id and not query.personal_id:
        statement = statement.where(
            exists(
                select(ClientExternalId.id).where(
                    ClientExternalId.client_id == Client.id,
                    ClientExternalId.system == query.system,
                    ClientExternalId.external_id == query.external_id,
                )
            )
        )
    else:
        raise ValidationFailed("give either personal_id, or system with external_id")
    return [await client_public(session, caller, client) for client in (await session.exec(statement)).all()]


async def list_clients(
    session: AsyncSession,
    caller: Caller,
    *,
    region: str | None,
    status: str | None,
    compliance: str | None,
    page: PageParams,
) -> Page[ClientSummary]:
    """Clients the caller may see, filtered; pages ordered by id."""
    on = today()
    statement = select(Client).where(readable(caller))
    if region:
        statement = statement.where(
            exists(
                select(ResponsibilityPeriod.id).where(
                    ResponsibilityPeriod.client_id == Client.id,
                    ResponsibilityPeriod.region == region,
                    col(ResponsibilityPeriod.valid_to).is_(None),
                    col(ResponsibilityPeriod.retracted_at).is_(None),
                )
            )
        )
    if status == "ended":
        statement = statement.where(col(Client.aftercare_end) < on)
    elif status == "active":
        statement = statement.where(col(Client.aftercare_end) >= on, col(Client.aftercare_start) <= on)
    elif status == "upcoming":
        statement = statement.where(col(Client.aftercare_start) > on)
    if compliance:
        open_gap = select(ComplianceGap.id).where(ComplianceGap.client_id == Client.id, gap_in_force(on))
        if compliance == "overdue":
            open_gap = open_gap.where(col(ComplianceGap.due) < on)
        has_gap = exists(open_gap)
        statement = statement.where(col(Client.aftercare_end) >= on, ~has_gap if compliance == "ok" else has_gap)
    result = await paginate(
        session,
        statement,
        keys=[col(Client.id)],
        key_of=lambda client: (client.id,),
        parse=[uuid.UUID],
        page=page,
    )
    return Page(items=await summaries(session, caller, result.items), next_cursor=result.next_cursor)


async def _holding_region(session: AsyncSession, caller: Caller, client: Client) -> str:
    """The caller's region if it currently holds a responsibility for the client, else 403."""
    region = caller.writer_region()
    if region not in await state.holding_regions(session, client.id, today()):
        raise NotResponsible("the caller's region holds no responsibility for this client")
    return region


async def update_client(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: ClientUpdate
) -> ClientPublic:
    """Change names, support level, address protection or external ids."""
    client = await client_for(session, caller, client_id, for_update=True)
    await _holding_region(session, caller, client)
    before = snapshot(client)
    changes = data.model_dump(exclude_unset=True, exclude={"external_ids"})
    if any(value is None for value in changes.values()):
        raise ValidationFailed(f"{', '.join(k for k, v in changes.items() if v is None)} cannot be null")
    changes = {field: value for field, value in changes.items() if getattr(client, field) != value}
    current_ids = {
        (row.system, row.external_id)
        for row in await session.exec(select(ClientExternalId).where(ClientExternalId.client_id == client.id))
    }
    new_ids = None if data.external_ids is None else {(item.system, item.id) for item in data.external_ids}
    if data.external_ids is not None and len(new_ids or ()) != len(data.external_ids):
        raise ValidationFailed("external_ids contains the same id twice")
    if not changes and new_ids in (None, current_ids):
        return await client_public(session, caller, client)  # nothing changes: no new version, nothing logged
    if changes.get("support_level") == "special":
        workers = [
            await session.get_one(Worker, assignment.worker_id)
            for assignment in await state.running_assignments(session, client.id, today())
            if assignment.responsibility == ORGANISING
        ]
        if any(worker.role != "social_worker" for worker in workers):
            raise Unprocessable(
                "end the organising assignment first: special support needs a social worker",
                code="social_worker_required",
            )
    for field, value in changes.items():
        setattr(client, field, value)
    if data.external_ids is not None and new_ids != current_ids:
        for row in await session.exec(select(ClientExternalId).where(ClientExternalId.client_id == client.id)):
            await session.delete(row)
        await session.flush()
        session.add_all(_external_id_rows(client.id, data.external_ids))
    client.version += 1
    client.updated_at = utcnow()
    session.add(client)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("an external id is already linked to another client", code="duplicate_external_id") from None
    record_change(session, caller, action="client.updated", entity=client, client_id=client.id, before=before)
    await session.commit()
    return await client_public(session, caller, client)


async def end_client(session: AsyncSession, caller: Caller, client_id: uuid.UUID, data: ClientEnd) -> ClientPublic:
    """End aftercare early: the organising region only; assignments end, gaps close."""
    client = await client_for(session, caller, client_id, for_update=True)
    periods = await state.periods_on(session, client.id, today())
    if caller.writer_region() != periods[ORGANISING].region:
        raise NotResponsible("only the organising region ends aftercare")
    if client.end_date is not None:
        raise Conflict("aftercare has already been ended", code="client_ended")
    if not client.aftercare_start <= data.end_date <= client.aftercare_end:
        raise Unprocessable("end_date must fall within the aftercare period", code="invalid_dates")
    before = snapshot(client)
    client.end_date, client.end_reason, client.aftercare_end = data.end_date, data.reason, data.end_date
    client.version += 1
    client.updated_at = utcnow()
    session.add(client)
    record_change(session, caller, action="client.ended", entity=client, client_id=client.id, before=before)
    first_day_after = data.end_date + dt.timedelta(days=1)
    for assignment in await state.running_assignments(session, client.id, first_day_after):
        await close_assignment(session, caller, assignment, end=first_day_after, reason="aftercare_ended")
    if data.end_date < today():  # ended already: nothing is left to ask for (a future end leaves them open)
        await settle_open(
            session, caller, client.id, kinds=list(RequestKind), status=RequestStatus.cancelled, note="aftercare ended"
        )
    await reconcile(session, caller, client, cause="aftercare_ended")
    await session.commit()
    return await client_public(session, caller, client)
