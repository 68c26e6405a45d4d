"""One import line each: find the entity by its source system's key, then create, update or leave it.

New workers, new clients and assignments of clients created in the same transaction take the
set-based path (``app.services.import_bulk``, which builds them with the services' own builders
and rules); every other write goes through the service the API uses (``create_worker``,
``update_worker``, ``clients.register``, ``update_client``, ``create_assignment``), after the
set-based path has written what it holds (``ImportContext.by_services``). Either way each rule,
permission and change entry is exactly the API's. A line raises the ``SiltaError`` the API would
answer with; the caller of these functions turns it into a per-line error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.domain.access import Caller
from app.domain.personal_id import parse_personal_id
from app.errors import Conflict, DuplicateClient, SiltaError, Unprocessable
from app.models.assignment import AssignmentCreate
from app.models.client import Client, ClientCreate, ClientExternalId, ClientUpdate
from app.models.imports import AssignmentLine, ClientLine, WorkerLine
from app.models.worker import Worker, WorkerCreate, WorkerUpdate
from app.services import assignments, clients, workers
from app.services.access import client_for, fully_involved
from app.services.clock import today
from app.services.import_bulk import Bulk
from app.services.import_index import ImportIndex, StoredClient, StoredWorker, stored_client
from app.services.vault import vault_of

Outcome = Literal["created", "unchanged", "updated"]
WORKER_MUTABLE = ("name", "role", "service", "email")
CLIENT_MUTABLE = ("first_name", "last_name", "support_level", "address_protection")
CLIENT_FIXED = (
    "aftercare_start",
    "organising_region",
    "residence_region",
    "residence_municipality",
    "residence_outside",
)


@dataclass(frozen=True)
class FirstSeen:
    """The first client line of the file carrying an identity code."""

    line: int
    system: str
    external_id: str


@dataclass
class ImportContext:
    settings: Settings
    index: ImportIndex = field(default_factory=ImportIndex)
    codes: dict[str, FirstSeen] = field(default_factory=dict)  # identity code -> its first line
    named_until: dict[tuple[str, str], int] = field(default_factory=dict)  # client key -> its last assignment line
    shown: set[uuid.UUID] = field(default_factory=set)  # clients a line's error told the caller about
    reference: list[Any] = field(default_factory=list)  # regions and municipalities, held for the session
    bulk: Bulk | None = None  # the set-based path of the current transaction (app.services.import_bulk)

    async def by_services(
        self, session: AsyncSession, *, client_id: uuid.UUID | None = None, worker_id: uuid.UUID | None = None
    ) -> None:
        """Before a line goes through the services: write what the set-based path holds, and let it
        forget the client or worker the line may change."""
        if self.bulk is not None:
            await self.bulk.flush(session)
            self.bulk.forget(client_id=client_id, worker_id=worker_id)


async def import_worker(
    session: AsyncSession, caller: Caller, line: WorkerLine, number: int, ctx: ImportContext
) -> Outcome:
    """A worker keyed by (region, external_id): created, or its name, role, service and email updated."""
    region = line.region or caller.writer_region()
    caller.require_coordinator_of(region)
    key = (region, line.external_id)
    worker_id = ctx.index.workers.get(key)
    if worker_id is None:
        data = line.model_dump(include={"name", "role", "service", "email", "external_id"} & line.model_fields_set)
        new = WorkerCreate.model_validate({**data, "region": region})
        if ctx.bulk is not None:
            ctx.index.workers[key] = ctx.bulk.worker(new)
        else:
            ctx.index.workers[key] = (await workers.create_worker(session, caller, new)).id
        return "created"
    stored = ctx.index.worker_rows.get(worker_id) or (ctx.bulk and ctx.bulk.workers.get(worker_id))
    if not stored:
        await ctx.by_services(session)
        stored = await _stored_worker(session, worker_id)
    given = [name for name in WORKER_MUTABLE if name in line.model_fields_set]
    changes = {name: getattr(line, name) for name in given if getattr(stored, name) != getattr(line, name)}
    if not changes:
        return "unchanged"
    await ctx.by_services(session, worker_id=worker_id)
    await workers.update_worker(session, caller, worker_id, WorkerUpdate.model_validate(changes))
    ctx.index.worker_rows.pop(worker_id, None)
    return "updated"


async def _stored_worker(session: AsyncSession, worker_id: uuid.UUID) -> StoredWorker:
    worker = (await session.exec(select(Worker).where(Worker.id == worker_id))).one()
    return StoredWorker(worker.id, worker.name, worker.role, worker.service, worker.email)


async def import_client(
    session: AsyncSession, caller: Caller, line: ClientLine, number: int, ctx: ImportContext
) -> Outcome:
    """A client keyed by (source system, external id): registered, or its names, support level and
    address protection updated; any other difference is ``conflicting_data``."""
    caller.writer_region()
    assert line.source_system is not None
    pid = parse_personal_id(line.personal_id, accept_temporary=ctx.settings.accept_temporary_ids)
    code = pid.code
    key = (line.source_system, line.external_id)
    client_id = ctx.index.clients.get(key)
    if client_id is not None:
        return await _update_client(session, caller, client_id, code, line, ctx)
    first = ctx.codes.get(code)
    if first is not None and first.line < number and (first.system, first.external_id) != key:
        if first.system != line.source_system:
            raise Conflict(
                f"line {first.line} has the same identity code under system {first.system}"
                f" (external id {first.external_id})",
                code="duplicate_across_systems",
            )
        raise DuplicateClient(f"line {first.line} has the same identity code under external id {first.external_id}")
    data = line.model_dump(exclude={"type", "source_system", "external_id", "external_ids"}, exclude_unset=True)
    data["external_ids"] = [{"system": line.source_system, "id": line.external_id}]
    new = ClientCreate.model_validate(data)
    if ctx.bulk is not None and vault_of(session).lookup(code) not in ctx.index.registered:
        client_id = ctx.bulk.client(new, pid, key)
    else:
        await ctx.by_services(session)
        try:
            client_id = (await clients.register(session, caller, new, settings=ctx.settings)).id
        except DuplicateClient:
            raise await _duplicate(session, caller, code, line.source_system) from None
    ctx.index.clients[key] = client_id
    ctx.index.held.add(client_id)  # registering needs the caller's region to hold a responsibility
    return "created"


async def _duplicate(session: AsyncSession, caller: Caller, code: str, system: str) -> SiltaError:
    """A registered identity code is never merged: name its other systems' ids to a region that holds it."""
    digest = vault_of(session).lookup(code)
    existing = (await session.exec(select(Client.id).where(Client.personal_id_hash == digest))).first()
    if existing is None or not await fully_involved(session, caller, existing):
        return DuplicateClient()
    links = (await session.exec(select(ClientExternalId).where(ClientExternalId.client_id == existing))).all()
    others = sorted((row.system, row.external_id) for row in links if row.system != system)
    if others:
        named = ", ".join(f"system {other} (external id {external})" for other, external in others)
        return Conflict(
            f"the identity code is registered under {named}", code="duplicate_across_systems", existing_id=str(existing)
        )
    return DuplicateClient(
        f"the identity code is registered (client {existing}) without this external id", existing_id=str(existing)
    )


async def _update_client(
    session: AsyncSession, caller: Caller, client_id: uuid.UUID, code: str, line: ClientLine, ctx: ImportContext
) -> Outcome:
    if client_id not in ctx.index.held:
        raise Conflict("an external id is already linked to another client", code="duplicate_external_id")
    await ctx.by_services(session, client_id=client_id)
    stored: StoredClient = ctx.index.client_rows.get(client_id) or await stored_client(
        session, await client_for(session, caller, client_id)
    )
    given = line.model_dump(include=set(CLIENT_FIXED) & line.model_fields_set)
    differing = [name for name, value in given.items() if getattr(stored, name) != value]
    if stored.personal_id_hash != vault_of(session).lookup(code):
        differing.append("personal_id")
    if differing:
        raise Conflict(
            f"the stored client differs in {', '.join(sorted(differing))}; "
            "change these through the API (moves, organising transfers), not by import",
            code="conflicting_data",
            existing_id=str(client_id),
        )
    changes = {
        name: getattr(line, name)
        for name in CLIENT_MUTABLE
        if name in line.model_fields_set and getattr(stored, name) != getattr(line, name)
    }
    if not changes:
        return "unchanged"
    await clients.update_client(session, caller, client_id, ClientUpdate.model_validate(changes))
    ctx.index.client_rows.pop(client_id, None)
    return "updated"


async def import_assignment(
    session: AsyncSession, caller: Caller, line: AssignmentLine, number: int, ctx: ImportContext
) -> Outcome:
    """A named worker: unchanged when the same worker already holds (or held from the same date) the
    responsibility, else created; another worker holding it is ``responsibility_taken`` as over the API."""
    region = caller.writer_region()
    assert line.source_system is not None
    client_id = ctx.index.clients.get((line.source_system, line.client_external_id))
    if client_id is None:
        raise Unprocessable(
            f"no client has external id {line.client_external_id} of system {line.source_system}",
            code="client_not_found",
        )
    worker_id = ctx.index.workers.get((region, line.worker_external_id))
    if worker_id is None:
        raise Unprocessable(
            f"region {region} has no worker with external id {line.worker_external_id}", code="worker_not_found"
        )
    if ctx.index.has_assignment(line, client_id, worker_id) and client_id in ctx.index.held:
        return "unchanged"
    bulk, responsibility = ctx.bulk, line.responsibility.value
    if (
        bulk
        and bulk.can_assign(client_id, worker_id)
        and bulk.assignment(client_id, worker_id, responsibility, line.start_date)
    ):
        ctx.index.add_assignment(client_id, responsibility, worker_id, line.start_date or today())
        return "created"
    await ctx.by_services(session, client_id=client_id)
    data = AssignmentCreate(responsibility=line.responsibility, worker_id=worker_id, start_date=line.start_date)
    created = await assignments.create_assignment(session, caller, client_id, data)
    ctx.index.add_assignment(client_id, created.responsibility.value, worker_id, created.start_date)
    return "created"
