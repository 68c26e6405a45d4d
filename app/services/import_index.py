"""What an import looks up for every line, loaded for the whole file in a few statements.

The keys of the file (workers by region and external id, clients by source system and
external id), the caller's region's view of those clients and their assignments. Lines that
create or change something update the index, so later lines of the same file find them.
Only the lookups are batched: every write still goes through the API's services, which
read and lock what their rules need themselves.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import Caller
from app.domain.personal_id import parse_personal_id
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import SiltaError
from app.models.assignment import Assignment
from app.models.client import Client, ClientExternalId, ResponsibilityPeriod
from app.models.imports import AssignmentLine, ClientLine, ImportLine, WorkerLine
from app.models.region import Municipality, Region
from app.models.worker import Worker
from app.services import state
from app.services.clock import today
from app.services.vault import vault_of

Key = tuple[str, str]
IN_LIST = 500  # values per IN (...): well under SQLite's and asyncpg's parameter limits


@dataclass(frozen=True)
class StoredWorker:
    id: uuid.UUID
    name: str
    role: str
    service: str
    email: str | None


@dataclass(frozen=True)
class StoredClient:
    """A client as a line compares it: the row and its latest (open-ended) periods."""

    id: uuid.UUID
    personal_id_hash: str  # the keyed hash of the identity code (app.services.vault), never the code
    aftercare_start: dt.date
    first_name: str
    last_name: str
    support_level: str
    address_protection: bool
    organising_region: str | None
    residence_region: str | None
    residence_municipality: str | None
    residence_outside: str | None

    @classmethod
    def of(cls, client: Client, periods: dict[str, ResponsibilityPeriod]) -> StoredClient:
        residence = periods.get(RESIDENCE)
        return cls(
            id=client.id,
            personal_id_hash=client.personal_id_hash,
            aftercare_start=client.aftercare_start,
            first_name=client.first_name,
            last_name=client.last_name,
            support_level=client.support_level,
            address_protection=client.address_protection,
            organising_region=periods[ORGANISING].region,
            residence_region=residence.region if residence else None,
            residence_municipality=residence.municipality if residence else None,
            residence_outside=residence.residence_outside if residence else None,
        )


@dataclass
class ImportIndex:
    workers: dict[Key, uuid.UUID] = field(default_factory=dict)  # (region, external id) -> worker
    worker_rows: dict[uuid.UUID, StoredWorker] = field(default_factory=dict)  # as loaded, until a line changes one
    clients: dict[Key, uuid.UUID] = field(default_factory=dict)  # (system, external id) -> client
    client_rows: dict[uuid.UUID, StoredClient] = field(default_factory=dict)  # held clients as loaded
    held: set[uuid.UUID] = field(default_factory=set)  # clients the caller's region holds or held
    assignments: set[tuple[uuid.UUID, str, uuid.UUID, dt.date]] = field(default_factory=set)  # not retracted
    running: set[tuple[uuid.UUID, str, uuid.UUID]] = field(default_factory=set)  # running today
    registered: set[str] = field(default_factory=set)  # the file's identity codes' hashes that are stored

    @classmethod
    async def load(cls, session: AsyncSession, caller: Caller, lines: Sequence[ImportLine]) -> ImportIndex:
        index = cls()
        region = caller.writer_region()
        await index._load_workers(session, _worker_keys(lines, region))
        await index._load_clients(session, region, _client_keys(lines))
        await index._load_registered(session, lines)
        return index

    def copy(self) -> ImportIndex:
        """A copy to restore if a transaction's lines run again: lines only add and remove entries (never
        change one), so copying the containers will do, at a cost that stays small for 100,000 lines."""
        return ImportIndex(**{member.name: copy.copy(getattr(self, member.name)) for member in fields(self)})

    def has_assignment(self, line: AssignmentLine, client_id: uuid.UUID, worker_id: uuid.UUID) -> bool:
        """The same worker holds the responsibility from the line's start date (or, without one, today)."""
        if line.start_date is not None:
            return (client_id, line.responsibility.value, worker_id, line.start_date) in self.assignments
        return (client_id, line.responsibility.value, worker_id) in self.running

    def add_assignment(self, client_id: uuid.UUID, responsibility: str, worker_id: uuid.UUID, start: dt.date) -> None:
        self.assignments.add((client_id, responsibility, worker_id, start))
        self.running.add((client_id, responsibility, worker_id))

    async def _load_workers(self, session: AsyncSession, keys: set[Key]) -> None:
        for region, external_ids in _grouped(keys).items():
            for chunk in _chunks(external_ids):
                statement = select(Worker).where(Worker.region == region, col(Worker.external_id).in_(chunk))
                for worker in await session.exec(statement):
                    self.workers[(region, str(worker.external_id))] = worker.id
                    self.worker_rows[worker.id] = StoredWorker(
                        worker.id, worker.name, worker.role, worker.service, worker.email
                    )

    async def _load_clients(self, session: AsyncSession, region: str, keys: set[Key]) -> None:
        for system, external_ids in _grouped(keys).items():
            for chunk in _chunks(external_ids):
                statement = select(ClientExternalId.external_id, ClientExternalId.client_id).where(
                    ClientExternalId.system == system, col(ClientExternalId.external_id).in_(chunk)
                )
                for external_id, client_id in await session.exec(statement):
                    self.clients[(system, external_id)] = client_id
        ids = sorted(set(self.clients.values()))
        for chunk in _chunks(ids):
            await self._load_held(session, region, chunk)

    async def _load_registered(self, session: AsyncSession, lines: Iterable[ImportLine]) -> None:
        vault = vault_of(session)
        digests = set()
        for line in lines:
            if isinstance(line, ClientLine):
                try:
                    digests.add(vault.lookup(parse_personal_id(line.personal_id, accept_temporary=True).code))
                except SiltaError:
                    continue  # reported when the line runs
        for chunk in _chunks(sorted(digests)):
            statement = select(Client.personal_id_hash).where(col(Client.personal_id_hash).in_(chunk))
            self.registered.update(await session.exec(statement))

    async def _load_held(self, session: AsyncSession, region: str, chunk: Sequence[Any]) -> None:
        """The access rule of ``access.held``, for many clients at once; then their rows and assignments."""
        period = ResponsibilityPeriod
        held = await session.exec(
            select(period.client_id)
            .where(col(period.client_id).in_(chunk), period.region == region, col(period.retracted_at).is_(None))
            .distinct()
        )
        ids = list(held.all())
        self.held.update(ids)
        if not ids:
            return
        latest: dict[uuid.UUID, dict[str, ResponsibilityPeriod]] = defaultdict(dict)
        open_periods = select(period).where(
            col(period.client_id).in_(ids), col(period.valid_to).is_(None), col(period.retracted_at).is_(None)
        )
        for row in await session.exec(open_periods):
            latest[row.client_id][row.responsibility] = row
        for client in await session.exec(select(Client).where(col(Client.id).in_(ids))):
            self.client_rows[client.id] = StoredClient.of(client, latest[client.id])
        on = today()
        named = select(Assignment).where(col(Assignment.client_id).in_(ids), col(Assignment.retracted_at).is_(None))
        for assignment in await session.exec(named):
            self.assignments.add(
                (assignment.client_id, assignment.responsibility, assignment.worker_id, assignment.valid_from)
            )
            if assignment.valid_to is None or assignment.valid_to > on:
                self.running.add((assignment.client_id, assignment.responsibility, assignment.worker_id))


async def reference_rows(session: AsyncSession) -> list[Any]:
    """Every region and municipality, to be held by the caller: the session's identity map keeps
    rows only while something references them, so the services' ``session.get`` of a region
    then costs no statement."""
    regions = list((await session.exec(select(Region))).all())
    return [*regions, *(await session.exec(select(Municipality))).all()]


async def stored_client(session: AsyncSession, client: Client) -> StoredClient:
    """A client the index has no row of (created or changed by an earlier line), read now."""
    return StoredClient.of(client, await state.open_periods(session, client.id))


def _worker_keys(lines: Iterable[ImportLine], region: str) -> set[Key]:
    keys = set()
    for line in lines:
        if isinstance(line, WorkerLine):
            keys.add((line.region or region, line.external_id))
        elif isinstance(line, AssignmentLine):
            keys.add((region, line.worker_external_id))
    return keys


def _client_keys(lines: Iterable[ImportLine]) -> set[Key]:
    keys = set()
    for line in lines:
        if isinstance(line, ClientLine) and line.source_system:
            keys.add((line.source_system, line.external_id))
        elif isinstance(line, AssignmentLine) and line.source_system:
            keys.add((line.source_system, line.client_external_id))
    return keys


def _grouped(keys: set[Key]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for first, second in sorted(keys):
        grouped[first].append(second)
    return grouped


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), IN_LIST):
        yield values[start : start + IN_LIST]
