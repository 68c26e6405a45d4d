"""Cost-responsibility decisions: proposals, answers and the register (no PUT, PATCH or DELETE)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.db import session_scope
from app.deps import AccessLogDep, Conditional, ConditionalDep, CurrentCaller, Pagination, SessionDep
from app.models.common import Day, DecisionStatus, PageOut, ServiceType
from app.models.cost import (
    CostDecision,
    CostDecisionAgree,
    CostDecisionCreate,
    CostDecisionDispute,
    CostDecisionPublic,
    CostSummary,
)
from app.services import costs as service
from app.services import preconditions

router = APIRouter(tags=["cost-decisions"])
RegionQuery = Annotated[str, Query(pattern=r"^\d{2}$")]


@router.post("/clients/{client_id}/cost-decisions", status_code=201)
async def propose_decision(
    client_id: uuid.UUID, data: CostDecisionCreate, session: SessionDep, caller: CurrentCaller
) -> CostDecisionPublic:
    """Propose who pays for a service; the counterparty region is asked to agree or dispute."""
    return await service.propose(session, caller, client_id, data)


@router.get("/clients/{client_id}/cost-decisions")
async def client_decisions(
    client_id: uuid.UUID,
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    page: Pagination,
    service_type: ServiceType | None = None,
    as_of: Day | None = None,
) -> PageOut[CostDecisionPublic]:
    """The client's decisions, oldest first; with ``as_of`` only the agreed ones in force that day."""
    result = await service.client_decisions(
        session, caller, client_id, service_type=service_type, as_of=as_of, page=page
    )
    await log.record([client_id])
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.get("/cost-decisions")
async def list_decisions(
    session: SessionDep,
    caller: CurrentCaller,
    page: Pagination,
    log: AccessLogDep,
    payer_region: Annotated[str | None, Query(pattern=r"^\d{2}$")] = None,
    status: DecisionStatus | None = None,
) -> PageOut[CostDecisionPublic]:
    """Decisions the caller's region is a party to (payer, proposer or counterparty)."""
    result = await service.list_decisions(session, caller, payer_region=payer_region, status=status, page=page)
    await log.record(decision.client_id for decision in result.items)
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.get("/cost-decisions/summary")
async def decision_summary(session: SessionDep, caller: CurrentCaller, region: RegionQuery) -> CostSummary:
    """Open disputes, proposals awaiting an answer, and what the region pays for today."""
    return await service.summary(session, caller, region)


@router.get(
    "/cost-decisions/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
async def export_decisions(
    request: Request,
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    payer_region: RegionQuery,
    format: Literal["csv", "jsonl"] = "csv",
) -> StreamingResponse:
    """The region's register for its finance department, streamed (client id and birth year only)."""
    service.check_export(caller, payer_region)
    await log.record(await service.export_clients(session, payer_region))  # ends this transaction

    async def rows() -> AsyncIterator[str]:
        async for session in session_scope(request.app.state.sessionmaker):
            async for line in service.export(session, caller, payer_region, format):
                yield line

    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    filename = f"cost-decisions-{payer_region}.{format}"
    return StreamingResponse(
        rows(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/cost-decisions/{decision_id}")
async def get_decision(
    decision_id: uuid.UUID, session: SessionDep, caller: CurrentCaller, log: AccessLogDep, response: Response
) -> CostDecisionPublic:
    """One decision; the ETag is what ``If-Match`` on its answer expects."""
    decision = await service.get_decision(session, caller, decision_id)
    await log.record([decision.client_id])
    Conditional.tag_with(response, decision)
    return decision


async def _answer(
    decision_id: uuid.UUID,
    status: DecisionStatus,
    note: str,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> CostDecisionPublic:
    current = partial(service.get_decision, session, caller, decision_id)
    return await cond.apply(
        preconditions.client_row_of(CostDecision, decision_id),
        current,
        lambda: service.answer(session, caller, decision_id, status, note),
        response,
    )


@router.post("/cost-decisions/{decision_id}/agree")
async def agree(
    decision_id: uuid.UUID,
    data: CostDecisionAgree,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> CostDecisionPublic:
    """The counterparty's coordinator agrees; refused if an agreed decision would overlap."""
    return await _answer(decision_id, DecisionStatus.agreed, data.note, session, caller, cond, response)


@router.post("/cost-decisions/{decision_id}/dispute")
async def dispute(
    decision_id: uuid.UUID,
    data: CostDecisionDispute,
    session: SessionDep,
    caller: CurrentCaller,
    cond: ConditionalDep,
    response: Response,
) -> CostDecisionPublic:
    """The counterparty's coordinator disputes, with a reason; a new decision may then supersede it."""
    return await _answer(decision_id, DecisionStatus.disputed, data.reason, session, caller, cond, response)
