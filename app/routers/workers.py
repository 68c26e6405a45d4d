"""Workers of the regions."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.deps import Conditional, ConditionalDep, CurrentCaller, Pagination, SessionDep
from app.models.common import PageOut, Service, WorkerRole
from app.models.worker import WorkerCreate, WorkerPublic, WorkerUpdate, WorkerUpdated
from app.services import preconditions
from app.services import workers as service

router = APIRouter(tags=["workers"])


@router.post("/workers", status_code=201)
async def create_worker(data: WorkerCreate, session: SessionDep, caller: CurrentCaller) -> WorkerPublic:
    """Add a worker to the coordinator's region."""
    return await service.create_worker(session, caller, data)


@router.get("/workers")
async def list_workers(
    session: SessionDep,
    caller: CurrentCaller,
    page: Pagination,
    region: Annotated[str | None, Query(pattern=r"^\d{2}$")] = None,
    role: WorkerRole | None = None,
    service_: Annotated[Service | None, Query(alias="service")] = None,
    active: bool | None = None,
) -> PageOut[WorkerPublic]:
    """Workers, filtered by region, role, service and activity."""
    result = await service.list_workers(
        session, caller, region=region, role=role, service=service_, active=active, page=page
    )
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.get("/workers/{worker_id}")
async def get_worker(
    worker_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, response: Response
) -> WorkerPublic:
    """One worker; the ETag is what ``If-Match`` on its changes expects."""
    worker = await service.get_worker(session, caller, worker_id)
    Conditional.tag_with(response, worker)
    return worker


@router.patch("/workers/{worker_id}")
async def update_worker(
    worker_id: uuid.UUID,
    data: WorkerUpdate,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> WorkerUpdated:
    """Change a worker; deactivating ends their assignments and lists the clients affected."""
    current = partial(service.get_worker, session, caller, worker_id)
    return await cond.apply(
        preconditions.worker_row(worker_id),
        current,
        lambda: service.update_worker(session, caller, worker_id, data),
        response,
    )
