"""One import line each: find the entity by its source system's key, then create, update or leave it.

Every write goes through the service the API uses (``create_worker``, ``update_worker``,
``register_client``, ``update_client``, ``create_assignment``), so each rule, permission and
change entry is exactly the API's. A line raises the ``SiltaError`` the API would answer with;
the caller of these functions turns it into a per-line error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.domain.access import Caller
from app.domain.personal_id import parse_personal_id
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import Conflict, DuplicateClient, NotFound, Unprocessable
from app.models.assignment import Assignment, AssignmentCreate
from app.models.client import Client, ClientCreate, ClientExternalId, ClientUpdate
from app.models.imports import AssignmentLine, ClientLine, WorkerLine
from app.models.worker import Worker, WorkerCreate, WorkerUpdate
from app.services import assignments, clients, state, workers
from app.services.access import client_for, fully_involved
from app.services.clock import today

Outcome = Literal["created", "unchanged", "updated"]
WORKER_MUTABLE = ("name", "role", "service", "email")
CLIENT_MUTABLE = ("first_name", "last_name", "support_level", "address_protection")


@dataclass(frozen=True)
class FirstSeen:
    """The first client line of the file carrying an identity code."""

    line: int
    system: str
    external_id: str


@dataclass
class ImportContext:
    settings: Settings
    codes: dict[str, FirstSeen] = field(default_factory=dict)  # identity code -> its first line
    shown: set[uuid.UUID] = field(default_factory=set)  # clients a line's error told the caller about


async def import_worker(
    session: AsyncSession, caller: Caller, line: WorkerLine, number: int, ctx: ImportContext
) -> Outcome:
    """A worker keyed by (region, external_id): created, or its name, role, service and email updated."""
    region = line.region or caller.writer_region()
    caller.require_coordinator_of(region)
    existing = (
        await session.exec(select(Worker).where(Worker.region == region, Worker.external_id == line.external_id))
    ).first()
    if existing is None:
        data = line.model_dump(include={"name", "role", "service", "email", "external_id"} & line.model_fields_set)
        await workers.create_worker(session, caller, WorkerCreate.model_validate({**data, "region": region}))
        return "created"
    given = [name for name in WORKER_MUTABLE if name in line.model_fields_set]
    changes = {name: getattr(line, name) for name in given if getattr(existing, name) != getattr(line, name)}
    if not changes:
        return "unchanged"
    await workers.update_worker(session, caller, existing.id, WorkerUpdate.model_validate(changes))
    return "updated"


async def import_client(
    session: AsyncSession, caller: Caller, line: ClientLine, number: int, ctx: ImportContext
) -> Outcome:
    """A client keyed by (source system, external id): registered, or its names, support level and
    address protection updated; any other difference is ``conflicting_data``."""
    caller.writer_region()
    assert line.source_system is not None
    code = parse_personal_id(line.personal_id, accept_temporary=ctx.settings.accept_temporary_ids).code
    linked = await client_by_external_id(session, line.source_system, line.external_id)
    if linked is not None:
        return await _update_client(session, caller, linked, code, line)
    first = ctx.codes.get(code)
    if (
        first is not None
        and first.line < number
        and (first.system, first.external_id) != (line.source_system, line.external_id)
    ):
        if first.system != line.source_system:
            raise Conflict(
                f"line {first.line} has the same identity code under system {first.system}"
                f" (external id {first.external_id})",
                code="duplicate_across_systems",
            )
        raise DuplicateClient(f"line {first.line} has the same identity code under external id {first.external_id}")
    await _refuse_registered(session, caller, code, line.source_system)
    data = line.model_dump(exclude={"type", "source_system", "external_id", "external_ids"}, exclude_unset=True)
    data["external_ids"] = [{"system": line.source_system, "id": line.external_id}]
    await clients.register_client(session, caller, ClientCreate.model_validate(data), settings=ctx.settings)
    return "created"


async def client_by_external_id(session: AsyncSession, system: str, external_id: str) -> uuid.UUID | None:
    statement = select(ClientExternalId.client_id).where(
        ClientExternalId.system == system, ClientExternalId.external_id == external_id
    )
    return (await session.exec(statement)).first()


async def _refuse_registered(session: AsyncSession, caller: Caller, code: str, system: str) -> None:
    """A registered identity code is never merged: name its other systems' ids to a region that holds it."""
    existing = (await session.exec(select(Client.id).where(Client.personal_id == code))).first()
    if existing is None:
        return
    if not await fully_involved(session, caller, existing):
        raise DuplicateClient()
    links = (await session.exec(select(ClientExternalId).where(ClientExternalId.client_id == existing))).all()
    others = sorted((row.system, row.external_id) for row in links if row.system != system)
    if others:
        named = ", ".join(f"system {other} (external id {external})" for other, external in others)
        raise Conflict(
            f"the identity code is registered under {named}", code="duplicate_across_systems", existing_id=str(existing)
        )
    raise DuplicateClient(
        f"the identity code is registered (client {existing}) without this external id", existing_id=str(existing)
    )


async def _update_client(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, code: str, line: ClientLine
) -> Outcome:
    try:
        client = await client_for(session, caller, client_id)
    except NotFound:
        raise Conflict("an external id is already linked to another client", code="duplicate_external_id") from None
    periods = await state.open_periods(session, client.id)
    residence = periods.get(RESIDENCE)
    stored = {
        "personal_id": client.personal_id,
        "aftercare_start": client.aftercare_start,
        "organising_region": periods[ORGANISING].region,
        "residence_region": residence.region if residence else None,
        "residence_municipality": residence.municipality if residence else None,
        "residence_outside": residence.residence_outside if residence else None,
    }
    given = {**line.model_dump(include=set(stored) & line.model_fields_set), "personal_id": code}
    differing = [name for name, value in given.items() if stored[name] != value]
    if differing:
        raise Conflict(
            f"the stored client differs in {', '.join(sorted(differing))}; "
            "change these through the API (moves, organising transfers), not by import",
            code="conflicting_data",
            existing_id=str(client.id),
        )
    changes = {
        name: getattr(line, name)
        for name in CLIENT_MUTABLE
        if name in line.model_fields_set and getattr(client, name) != getattr(line, name)
    }
    if not changes:
        return "unchanged"
    await clients.update_client(session, caller, client.id, ClientUpdate.model_validate(changes))
    return "updated"


async def import_assignment(
    session: AsyncSession, caller: Caller, line: AssignmentLine, number: int, ctx: ImportContext
) -> Outcome:
    """A named worker: unchanged when the same worker already holds (or held from the same date) the
    responsibility, else created; another worker holding it is ``responsibility_taken`` as over the API."""
    region = caller.writer_region()
    assert line.source_system is not None
    client_id = await client_by_external_id(session, line.source_system, line.client_external_id)
    if client_id is None:
        raise Unprocessable(
            f"no client has external id {line.client_external_id} of system {line.source_system}",
            code="client_not_found",
        )
    worker_id = (
        await session.exec(
            select(Worker.id).where(Worker.region == region, Worker.external_id == line.worker_external_id)
        )
    ).first()
    if worker_id is None:
        raise Unprocessable(
            f"region {region} has no worker with external id {line.worker_external_id}", code="worker_not_found"
        )
    same = select(Assignment.id).where(
        Assignment.client_id == client_id,
        Assignment.responsibility == line.responsibility,
        Assignment.worker_id == worker_id,
    )
    same = (
        same.where(col(Assignment.valid_from) == line.start_date, col(Assignment.retracted_at).is_(None))
        if line.start_date
        else same.where(state.running(today()))
    )
    if (await session.exec(same)).first() is not None and await fully_involved(session, caller, client_id):
        return "unchanged"
    data = AssignmentCreate(responsibility=line.responsibility, worker_id=worker_id, start_date=line.start_date)
    await assignments.create_assignment(session, caller, client_id, data)
    return "created"
