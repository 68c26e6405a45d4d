"""The set-based path of an import: new workers, new clients and their assignments, in bulk.

Most lines of a first import create something: a worker, a client no system has registered, an
assignment for a client created earlier in the file. Through the services each costs a dozen
statements and a commit; here such a line is checked by the same rules with the same builders
(``workers.new_worker``, ``clients.registration``, ``assignments.new_assignment``,
``compliance.plan_gaps``/``new_gap``, ``requests.new_request``) against what this import holds in
memory, and its rows, its change entry and its feed events are written together with those of
the lines before it, a few statements per table (``flush``).

What may take this path, and why its checks need no database:

- a worker whose (region, external id) no worker has (the import's index read them all);
- a client whose key and whose identity code are not registered (the index read the stored codes
  of every code in the file), and whose code is on no earlier line under another key;
- an assignment of a client registered on this path in the same transaction, to a worker created
  on it or read (and locked, shared, as ``create_assignment`` does) when the transaction began.
  Nobody else can see, let alone change, a client before its transaction commits, so its periods,
  assignments, gaps and requests held here are all there is.

Every other line goes through the services (``app.services.import_lines``): before it runs, what
is held here is written (``flush``), so the line sees the file's earlier lines in the database,
and the client or worker it may change is no longer held (``forget``). The change entries and
feed events of all lines keep the file's order. A registration never opens a request to the
importing region, so an assignment here never fulfils one; if it would, the line takes the
services' path instead.

A unique index that still refuses a row (another writer registered the same code meanwhile)
raises ``BulkConflict``: the import runs that transaction's lines again through the services,
which report each line's error as over the API.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Table, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import Caller
from app.domain.personal_id import PersonalId
from app.errors import ResponsibilityTaken
from app.models.assignment import Assignment, ComplianceGap
from app.models.client import Client, ClientCreate, ClientExternalId, ResponsibilityPeriod
from app.models.common import RequestStatus
from app.models.region import Municipality, Region
from app.models.request import CoordinationRequest
from app.models.worker import Worker, WorkerCreate
from app.services import state
from app.services.assignments import ASSIGN_REQUEST, new_assignment
from app.services.audit import change_record, write_changes
from app.services.clients import registration
from app.services.clock import today
from app.services.compliance import GapPlan, end_gap, new_gap, plan_gaps
from app.services.regions import residence_of
from app.services.requests import new_request
from app.services.vault import Vault
from app.services.workers import new_worker

Row = TypeVar("Row", bound=SQLModel)
INSERT_ORDER = (Worker, Client, ResponsibilityPeriod, ClientExternalId, Assignment, ComplianceGap, CoordinationRequest)
Changes = list[dict[str, Any]]


class BulkConflict(Exception):
    """The database refused a row written in bulk: run the transaction's lines through the services."""


@dataclass
class Held:
    """A client registered on this path in the current transaction, and everything it has."""

    key: tuple[str, str]  # (source system, external id)
    client: Client
    periods: list[ResponsibilityPeriod]
    assignments: list[Assignment] = field(default_factory=list)
    gaps: list[ComplianceGap] = field(default_factory=list)
    requests: list[CoordinationRequest] = field(default_factory=list)


@dataclass
class Bulk:
    """What one transaction of an import holds in memory and has yet to write."""

    caller: Caller
    vault: Vault
    regions: dict[str, Region]
    municipalities: dict[str, Municipality]
    clients: dict[uuid.UUID, Held] = field(default_factory=dict)
    workers: dict[uuid.UUID, Worker] = field(default_factory=dict)
    new_rows: dict[type[SQLModel], list[SQLModel]] = field(default_factory=dict)
    unwritten: set[uuid.UUID] = field(default_factory=set)  # ids of the rows in new_rows
    changed_rows: dict[uuid.UUID, SQLModel] = field(default_factory=dict)  # written already, changed since
    writes: list[Changes] = field(default_factory=list)  # each line's changes, in file order

    @classmethod
    async def begin(
        cls, session: AsyncSession, caller: Caller, vault: Vault, reference: Iterable[Any], worker_ids: set[uuid.UUID]
    ) -> Bulk:
        """A transaction's bulk state, with the stored workers its assignment lines name read and locked."""
        bulk = cls(
            caller,
            vault,
            regions={row.code: _copy(row) for row in reference if isinstance(row, Region)},
            municipalities={row.code: _copy(row) for row in reference if isinstance(row, Municipality)},
        )
        ids = sorted(worker_ids)
        for start in range(0, len(ids), 500):
            statement = select(Worker).where(col(Worker.id).in_(ids[start : start + 500])).with_for_update(read=True)
            bulk.workers.update((worker.id, _copy(worker)) for worker in await session.exec(statement))
        return bulk

    # --- lines ----------------------------------------------------------------------------------

    # Each line first checks and builds everything that can fail, then keeps its rows: a line that
    # fails leaves nothing behind, as its savepoint does on the services' path.

    def worker(self, data: WorkerCreate) -> uuid.UUID:
        worker = new_worker(self._region(data.region), data)
        self.workers[worker.id] = worker
        self._keep([worker], [change_record("worker.created", worker, None)])
        return worker.id

    def client(self, data: ClientCreate, pid: PersonalId, key: tuple[str, str]) -> uuid.UUID:
        organising = state.organiser(self._region(data.organising_region))
        municipality = self.municipalities.get(data.residence_municipality or "")
        residence = residence_of(data, municipality, {code for code, row in self.regions.items() if row.organiser})
        on = today()
        new = registration(self.caller.writer_region(), data, pid, organising, residence, on, self.vault.seal(pid.code))
        client, held = new.client, Held(key, new.client, new.periods)
        requests = []
        if new.request is not None:
            kind, other = new.request
            due = on + dt.timedelta(days=self._region(other).grace_days)
            requests.append(new_request(self.caller, client.id, kind=kind, to_region=other, due_date=due))
        plan, gaps = self._plan_gaps(held, held.assignments, cause="registered")
        changes = [
            change_record("client.registered", client, client.id),
            *self._gap_changes(held, plan, gaps, "registered"),
        ]
        changes += [change_record("request.created", request, client.id) for request in requests]
        held.requests.extend(requests)
        self.clients[client.id] = held
        self._keep([client, *new.periods, *new.external_ids, *gaps, *requests], changes)
        return client.id

    def can_assign(self, client_id: uuid.UUID, worker_id: uuid.UUID) -> bool:
        return client_id in self.clients and worker_id in self.workers

    def assignment(
        self, client_id: uuid.UUID, worker_id: uuid.UUID, responsibility: str, start: dt.date | None
    ) -> bool:
        """Name the worker; False (nothing done) when the line must go through the services."""
        held, worker = self.clients[client_id], self.workers[worker_id]
        start = start or today()
        assignment = new_assignment(
            self.caller, held.client, worker, state.in_force(held.periods, start), responsibility, start
        )
        for other in held.assignments:
            running = other.retracted_at is None and (other.valid_to is None or other.valid_to > start)
            if other.responsibility == responsibility and running:
                raise ResponsibilityTaken(assignment_id=str(other.id))
        if any(_fulfils(request, assignment) for request in held.requests):
            return False
        plan, gaps = self._plan_gaps(held, [*held.assignments, assignment], cause="assigned")
        held.assignments.append(assignment)
        changes = [
            change_record("assignment.created", assignment, client_id),
            *self._gap_changes(held, plan, gaps, "assigned"),
        ]
        self._keep([assignment, *gaps], changes)
        return True

    def forget(self, *, client_id: uuid.UUID | None = None, worker_id: uuid.UUID | None = None) -> None:
        """A line through the services may change this client or worker: later lines read it again."""
        self.clients.pop(client_id, None)  # type: ignore[arg-type]
        self.workers.pop(worker_id, None)  # type: ignore[arg-type]

    def release(self, named_until: dict[tuple[str, str], int], *, after: int) -> None:
        """After a flush: let go of the clients no line after ``after`` names (``named_until``: a client's
        last assignment line). Memory then holds the clients of the last ``FLUSH_LINES`` lines and those
        a later line names (some 20 KiB each), not every client of an atomic import's file."""
        kept = self.clients.items()
        self.clients = {client_id: held for client_id, held in kept if named_until.get(held.key, 0) > after}

    # --- writing --------------------------------------------------------------------------------

    async def flush(self, session: AsyncSession) -> None:
        """Write what the lines so far added and changed, their change entries and feed events."""
        if not self.writes:
            return
        try:
            await session.run_sync(self._write)
            await session.commit()  # with savepoints: release this one, so a later line's rollback keeps it
        except (IntegrityError, DataError) as exc:
            raise BulkConflict() from exc

    def _write(self, session: Session) -> None:
        for model in INSERT_ORDER:
            rows = self.new_rows.pop(model, [])
            if rows:  # the table's insert: one executemany (the ORM's splits rows by their None columns)
                session.execute(_table(model).insert(), [row.model_dump() for row in rows])
        for model in (ComplianceGap, CoordinationRequest):
            changed = [row.model_dump() for row in self.changed_rows.values() if isinstance(row, model)]
            if changed:
                session.execute(update(model), changed)
        writes, self.writes = self.writes, []
        write_changes(session, self.caller, writes)  # type: ignore[arg-type]  # sqlmodel's Session is one
        self.changed_rows.clear()
        self.unwritten.clear()

    def _region(self, code: str) -> Region:
        return state.found_region(self.regions.get(code), code)

    def _keep(self, rows: list[SQLModel], changes: Changes) -> None:
        """A line's new rows and its changes, to be written by the next ``flush``."""
        for row in rows:
            self.new_rows.setdefault(type(row), []).append(row)
            self.unwritten.add(row.id)  # type: ignore[attr-defined]
        self.writes.append(changes)

    def _plan_gaps(
        self, held: Held, assignments: list[Assignment], *, cause: str
    ) -> tuple[GapPlan, list[ComplianceGap]]:
        """``compliance.reconcile`` on what is held, up to what can fail: the plan and the new gap rows."""
        plan = plan_gaps(held.client, held.periods, assignments, held.gaps)
        on = today()
        gaps = [new_gap(held.client.id, span, self._region(span.region).grace_days, on, cause) for span in plan.new]
        return plan, gaps

    def _gap_changes(self, held: Held, plan: GapPlan, gaps: list[ComplianceGap], cause: str) -> Changes:
        """The rest of ``reconcile``, which cannot fail: end the planned rows, hold the new ones."""
        changes = []
        for gap, until, closed_by in plan.ends:
            action, before = end_gap(gap, until, closed_by, cause)
            if gap.id not in self.unwritten:
                self.changed_rows[gap.id] = gap
            changes.append(change_record(action, gap, held.client.id, before=before))
        held.gaps.extend(gaps)
        return changes + [change_record("gap.opened", gap, held.client.id) for gap in gaps]


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined]


def _copy(row: Row) -> Row:
    """A detached copy: the session's rows expire when a line through the services commits."""
    return type(row).model_validate(row.model_dump(warnings=False))


def _fulfils(request: CoordinationRequest, assignment: Assignment) -> bool:
    """``settle_open`` in ``create_assignment`` would accept this open request."""
    return (
        request.status == RequestStatus.open
        and request.kind == ASSIGN_REQUEST[assignment.responsibility]
        and request.to_region == assignment.region
    )
