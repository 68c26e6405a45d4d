"""Workers of a region: managed by its coordinators; deactivation ends their assignments."""

from __future__ import annotations

import uuid

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import Caller
from app.domain.responsibility import ORGANISING, RESIDENCE
from app.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from app.models.assignment import Assignment
from app.models.client import Client
from app.models.common import PairStatus, RequestKind, utcnow
from app.models.pair import WorkPair
from app.models.region import Region
from app.models.worker import AffectedClient, Worker, WorkerCreate, WorkerPublic, WorkerUpdate, WorkerUpdated
from app.services import state
from app.services.assignments import close_assignment
from app.services.audit import record_change, snapshot
from app.services.clock import today
from app.services.compliance import reconcile
from app.services.pagination import Page, PageParams, paginate
from app.services.pairs import end_pairs_of
from app.services.requests import open_request


def worker_public(worker: Worker) -> WorkerPublic:
    return WorkerPublic.model_validate(worker, from_attributes=True)


async def create_worker(session: AsyncSession, caller: Caller, data: WorkerCreate) -> WorkerPublic:
    """Add a worker to the coordinator's own region."""
    caller.require_coordinator_of(data.region)
    worker = new_worker(await state.region(session, data.region), data)
    session.add(worker)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("a worker with this external_id exists in the region", code="duplicate_worker") from None
    record_change(session, caller, action="worker.created", entity=worker, client_id=None)
    await session.commit()
    return worker_public(worker)


def new_worker(region: Region, data: WorkerCreate) -> Worker:
    """The worker row ``create_worker`` adds, active from today (imports build many without the database)."""
    state.organiser(region)
    worker = Worker.model_validate(data)
    worker.active_from = today()
    return worker


async def get_worker(session: AsyncSession, caller: Caller, worker_id: uuid.UUID) -> WorkerPublic:
    return worker_public(await _worker(session, worker_id))


async def _worker(session: AsyncSession, worker_id: uuid.UUID, *, for_update: bool = False) -> Worker:
    statement = select(Worker).where(Worker.id == worker_id)
    worker = (await session.exec(statement.with_for_update() if for_update else statement)).first()
    if worker is None:
        raise NotFound("worker not found", code="worker_not_found")
    return worker


async def list_workers(
    session: AsyncSession,
    caller: Caller,
    *,
    region: str | None,
    role: str | None,
    service: str | None,
    active: bool | None,
    page: PageParams,
) -> Page[WorkerPublic]:
    statement = select(Worker)
    for column, value in (
        (Worker.region, region),
        (Worker.role, role),
        (Worker.service, service),
        (Worker.active, active),
    ):
        if value is not None:
            statement = statement.where(column == value)
    result = await paginate(
        session,
        statement,
        keys=[col(Worker.id)],
        key_of=lambda worker: (worker.id,),
        parse=[uuid.UUID],
        page=page,
    )
    return Page(items=[worker_public(worker) for worker in result.items], next_cursor=result.next_cursor)


async def update_worker(
    session: AsyncSession, caller: Caller, worker_id: uuid.UUID, data: WorkerUpdate
) -> WorkerUpdated:
    """Change a worker; ``active=false`` ends the worker's assignments and opens gaps."""
    worker = await _worker(session, worker_id, for_update=True)
    caller.require_coordinator_of(worker.region)
    changes = data.model_dump(exclude_unset=True)
    if any(value is None for field, value in changes.items() if field != "email"):
        raise ValidationFailed("only email may be set to null")
    changes = {field: value for field, value in changes.items() if getattr(worker, field) != value}
    if not changes:
        return WorkerUpdated(**worker_public(worker).model_dump(), affected_clients=[])
    if changes.get("role", worker.role) != "social_worker":
        await _refuse_if_special_needs_social_worker(session, worker)
    before = snapshot(worker)
    for field, value in changes.items():
        setattr(worker, field, value)
    if "active" in changes:  # dated, so caseloads for past dates count the workers of those dates
        worker.active_from, worker.inactive_from = (today(), None) if worker.active else (worker.active_from, today())
    worker.version += 1
    worker.updated_at = utcnow()
    session.add(worker)
    record_change(session, caller, action="worker.updated", entity=worker, client_id=None, before=before)
    affected: list[AffectedClient] = []
    if before and before["active"] and not worker.active:
        affected = await _end_assignments_of(session, caller, worker)
    await session.commit()
    return WorkerUpdated(**worker_public(worker).model_dump(), affected_clients=affected)


async def _refuse_if_special_needs_social_worker(session: AsyncSession, worker: Worker) -> None:
    clash = (
        await session.exec(
            select(Assignment.id)
            .join(Client, col(Client.id) == Assignment.client_id)
            .where(
                Assignment.worker_id == worker.id,
                Assignment.responsibility == ORGANISING,
                state.running(today()),
                Client.support_level == "special",
                col(Client.aftercare_end) >= today(),
            )
        )
    ).first()
    if clash is not None and worker.role == "social_worker":
        raise Unprocessable(
            "the worker is the organising social worker of a client with special support needs",
            code="social_worker_required",
        )


async def _end_assignments_of(session: AsyncSession, caller: Caller, worker: Worker) -> list[AffectedClient]:
    """End the worker's running assignments and pairs today; each client row is locked (worker, then client).

    Where the worker held another region's client's residence responsibility, the organising
    region asks the worker's region, by a coordination request, to name a new worker.
    """
    on = today()
    rows = (
        await session.exec(
            select(Assignment)
            .where(Assignment.worker_id == worker.id, state.running(on))
            .order_by(col(Assignment.client_id), col(Assignment.valid_from))
        )
    ).all()
    paired = await session.exec(
        select(WorkPair.client_id).where(
            or_(col(WorkPair.worker_1_id) == worker.id, col(WorkPair.worker_2_id) == worker.id),
            or_(col(WorkPair.status).in_([PairStatus.proposed, PairStatus.active]), col(WorkPair.valid_to) > on),
        )
    )
    clients = {}
    for client_id in sorted({assignment.client_id for assignment in rows} | set(paired.all())):
        clients[client_id] = (await session.exec(select(Client).where(Client.id == client_id).with_for_update())).one()
    affected = []
    for assignment in rows:
        await close_assignment(session, caller, assignment, end=on, reason="worker_deactivated")
        affected.append(
            AffectedClient(
                client_id=assignment.client_id,
                responsibility=assignment.responsibility,
                assignment_id=assignment.id,
            )
        )
    await end_pairs_of(session, caller, end=on, reason="worker deactivated", worker_id=worker.id)
    for client in (clients[client_id] for client_id in sorted({a.client_id for a in rows})):
        organising = (await state.periods_on(session, client.id, on))[ORGANISING].region
        if organising and any(a.client_id == client.id and a.responsibility == RESIDENCE for a in rows):
            await open_request(
                session,
                caller,
                client,
                kind=RequestKind.assign_residence_worker,
                to_region=worker.region,
                from_region=organising,
                on=on,
                message="the named residence worker was deactivated",
            )
        await reconcile(session, caller, client, cause="worker_deactivated")
    return affected
