"""Work pairs across regions and services."""

from __future__ import annotations

import uuid
from functools import partial

from fastapi import APIRouter, Response

from app.deps import AccessLogDep, Conditional, ConditionalDep, CurrentCaller, Pagination, SessionDep
from app.models.common import PageOut
from app.models.pair import PairCreate, PairEnd, PairPublic, WorkPair
from app.services import pairs as service
from app.services import preconditions

router = APIRouter(tags=["pairs"])


@router.post("/clients/{client_id}/pairs", status_code=201)
async def propose_pair(
    client_id: uuid.UUID, data: PairCreate, session: SessionDep, caller: CurrentCaller
) -> PairPublic:
    """Propose a pair; the other worker's region confirms it."""
    return await service.propose_pair(session, caller, client_id, data)


@router.get("/clients/{client_id}/pairs")
async def client_pairs(
    client_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, log: AccessLogDep, page: Pagination
) -> PageOut[PairPublic]:
    """Every pair of the client, oldest first."""
    result = await service.client_pairs(session, caller, client_id, page=page)
    await log.record([client_id])
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.get("/workers/{worker_id}/pairs")
async def worker_pairs(
    worker_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, page: Pagination, log: AccessLogDep
) -> PageOut[PairPublic]:
    """The worker's pairs on clients the caller may see."""
    result = await service.worker_pairs(session, caller, worker_id, page=page)
    await log.record(pair.client_id for pair in result.items)
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.get("/pairs/{pair_id}")
async def get_pair(
    pair_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, log: AccessLogDep, response: Response
) -> PairPublic:
    """One pair; the ETag is what ``If-Match`` on its confirmation or end expects."""
    pair = await service.get_pair(session, caller, pair_id)
    await log.record([pair.client_id])
    Conditional.tag_with(response, pair)
    return pair


@router.post("/pairs/{pair_id}/confirm")
async def confirm_pair(
    pair_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, cond: ConditionalDep, response: Response
) -> PairPublic:
    """The other side's coordinator confirms: active from today."""
    current = partial(service.get_pair, session, caller, pair_id)
    return await cond.apply(
        preconditions.client_row_of(WorkPair, pair_id),
        current,
        lambda: service.confirm_pair(session, caller, pair_id),
        response,
    )


@router.post("/pairs/{pair_id}/end")
async def end_pair(
    pair_id: uuid.UUID,
    data: PairEnd,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> PairPublic:
    """Either side ends the pair (or withdraws the proposal) today."""
    current = partial(service.get_pair, session, caller, pair_id)
    return await cond.apply(
        preconditions.client_row_of(WorkPair, pair_id),
        current,
        lambda: service.end_pair(session, caller, pair_id, data),
        response,
    )
