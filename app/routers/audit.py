"""Auditors: the logs, a client's access report, exports, and the tamper-evident chain."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from app.db import session_scope
from app.deps import AccessLogDep, CurrentCaller, Pagination, SessionDep
from app.models.audit import (
    AccessEntryPublic,
    AccessReport,
    AccessReportItem,
    ChangeEntryPublic,
    Checkpoint,
    CheckpointCheck,
    CheckpointResult,
    DisclosurePublic,
    VerifyReport,
)
from app.models.common import Moment, PageOut
from app.security import AUDIT_KID, public_jwks
from app.services import audit_queries as queries
from app.services import chain, chain_verify

router = APIRouter(tags=["audit"])
Region = Annotated[str | None, Query(pattern=r"^\d{2}$")]


def _clients(ids: Any) -> list[uuid.UUID]:
    return [uuid.UUID(str(value)) for value in ids if value]


@router.get("/audit/events")
async def audit_changes(
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    page: Pagination,
    client_id: uuid.UUID | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    entity_type: Annotated[str | None, Query(max_length=40)] = None,
    since: Moment | None = None,
    until: Moment | None = None,
) -> PageOut[ChangeEntryPublic]:
    """Change entries, newest first: one per write, with every entity it changed."""
    filters = queries.LogFilter(client_id=client_id, actor=actor, since=since, until=until)
    result = await queries.changes(session, caller, filters, action=action, entity_type=entity_type, page=page)
    await log.record(_clients(change.get("client_id") for entry in result.items for change in entry.changes))
    items = [ChangeEntryPublic.model_validate(entry, from_attributes=True) for entry in result.items]
    return PageOut(items=items, next_cursor=result.next_cursor)


@router.get("/audit/access-log")
async def audit_access(
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    page: Pagination,
    client_id: uuid.UUID | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    region: Region = None,
    purpose: Annotated[str | None, Query(max_length=30)] = None,
    since: Moment | None = None,
    until: Moment | None = None,
) -> PageOut[AccessEntryPublic]:
    """Access entries (käyttöloki), newest first: who was shown which clients, where, and why."""
    filters = queries.LogFilter(client_id=client_id, actor=actor, since=since, until=until)
    result = await queries.accesses(session, caller, filters, region=region, purpose=purpose, page=page)
    items = [AccessEntryPublic.model_validate(entry, from_attributes=True) for entry in result.items]
    items = await queries.only_own_clients(session, caller, items)
    await log.record(_clients(value for entry in items for value in entry.client_ids))
    return PageOut(items=items, next_cursor=result.next_cursor)


@router.get("/audit/disclosures")
async def audit_disclosures(
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    page: Pagination,
    client_id: uuid.UUID | None = None,
    to_region: Region = None,
    from_region: Region = None,
    since: Moment | None = None,
    until: Moment | None = None,
) -> PageOut[DisclosurePublic]:
    """Disclosures (luovutusloki), newest first: client data shown outside its organising region."""
    filters = queries.LogFilter(client_id=client_id, since=since, until=until)
    result = await queries.disclosures(
        session, caller, filters, to_region=to_region, from_region=from_region, page=page
    )
    await log.record(entry.client_id for entry in result.items)
    items = [DisclosurePublic.model_validate(entry, from_attributes=True) for entry in result.items]
    return PageOut(items=items, next_cursor=result.next_cursor)


@router.get("/clients/{client_id}/access-report")
async def access_report(
    client_id: uuid.UUID,
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    page: Pagination,
    since: Moment | None = None,
    until: Moment | None = None,
) -> AccessReport:
    """Who processed the client's data, to whom it was disclosed and on what basis (default: two years)."""
    start, end, result = await queries.access_report(session, caller, client_id, since=since, until=until, page=page)
    await log.record([client_id])
    return AccessReport(
        client_id=client_id,
        since=start,
        until=end,
        items=[
            AccessReportItem(
                occurred_at=entry.occurred_at,
                actor=entry.actor,
                roles=entry.roles,
                actor_region=entry.actor_region,
                client_system=entry.client_system,
                endpoint=entry.endpoint,
                purpose=entry.purpose,
                disclosed_to=[DisclosurePublic.model_validate(d, from_attributes=True) for d in shown],
            )
            for entry, shown in result.items
        ],
        next_cursor=result.next_cursor,
    )


@router.get("/audit/verify")
async def verify_chain(session: SessionDep, caller: CurrentCaller) -> VerifyReport:
    """Recompute the chain: the first broken position, if any, and how much is not sealed yet."""
    queries.require_chain_reader(caller)
    return VerifyReport(**dataclasses.asdict(await chain_verify.verify(session)))


@router.post("/audit/checkpoints", status_code=201)
async def create_checkpoint(request: Request, session: SessionDep, caller: CurrentCaller) -> Checkpoint:
    """Seal what is pending and sign the head of the chain, for an auditor to keep elsewhere."""
    queries.require_chain_reader(caller)
    return Checkpoint(**await chain.checkpoint(session, request.app.state.audit_key.pem))


@router.post("/audit/checkpoints/verify")
async def verify_checkpoint(
    request: Request, data: CheckpointCheck, session: SessionDep, caller: CurrentCaller
) -> CheckpointResult:
    """Is this checkpoint ours, and does the chain still hold its hash at its position?"""
    queries.require_chain_reader(caller)
    pem = request.app.state.audit_key.pem
    return CheckpointResult(**await chain_verify.verify_checkpoint(session, pem, data.signature))


@router.get("/audit/keys")
async def audit_keys(request: Request, caller: CurrentCaller) -> dict[str, Any]:
    """The public key (JWKS) that checkpoint signatures verify against."""
    queries.require_chain_reader(caller)
    return public_jwks(request.app.state.audit_key.pem, AUDIT_KID)


@router.get(
    "/audit/export", response_class=StreamingResponse, responses={200: {"content": {"application/x-ndjson": {}}}}
)
async def export_log(
    request: Request,
    session: SessionDep,
    caller: CurrentCaller,
    log: AccessLogDep,
    log_name: Annotated[Literal["change", "access", "disclosure"], Query(alias="log")],
    since: Moment | None = None,
    until: Moment | None = None,
) -> StreamingResponse:
    """One log as JSON Lines with each entry's chain position and hash, for re-verification elsewhere."""
    queries.export_scope(caller)
    await log.record(await queries.export_clients(session, log_name, since, until))  # ends this transaction

    async def lines() -> AsyncIterator[str]:
        async for session in session_scope(request.app.state.sessionmaker):
            async for line in queries.export(session, log_name, since, until):
                yield line

    return StreamingResponse(lines(), media_type="application/x-ndjson")
