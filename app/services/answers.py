"""Answering coordination requests: accept and decline by the receiver, cancel by the asker."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import Caller
from app.errors import NotResponsible, Unprocessable
from app.models.client import Client
from app.models.common import DecisionStatus, RequestKind, RequestStatus
from app.models.pair import WorkPair
from app.models.request import CoordinationRequest, CoordinationRequestPublic, RequestAnswer
from app.services import costs, pairs
from app.services.clock import today
from app.services.requests import RESPONSIBILITY_OF, lock_for_answer, request_public, settle
from app.services.residence import transfer_organising

Action = Literal["accept", "decline", "cancel"]
OUTCOME = {"accept": RequestStatus.accepted, "decline": RequestStatus.declined, "cancel": RequestStatus.cancelled}


async def answer_request(
    session: AsyncSession, caller: Caller, request_id: uuid.UUID, action: Action, data: RequestAnswer
) -> CoordinationRequestPublic:
    """Settle a request once: a second answer, even a simultaneous one, gets 409 ``request_answered``."""
    request = await lock_for_answer(session, caller, request_id)
    if action == "cancel":
        if caller.writer_region() != request.from_region:
            raise NotResponsible(f"only region {request.from_region}, which asked, may cancel")
    else:
        caller.require_coordinator_of(request.to_region)
    await _carry_out(session, caller, request, action, data.note)
    settle(session, caller, request, OUTCOME[action], note=data.note)
    await session.commit()
    return request_public(request)


async def _carry_out(
    session: AsyncSession, caller: Caller, request: CoordinationRequest, action: Action, note: str
) -> None:
    """What the answer does besides closing the request."""
    if action == "accept" and request.kind in RESPONSIBILITY_OF:
        raise Unprocessable(
            "a request to name a worker is accepted by naming one: POST /v1/clients/{id}/assignments",
            code="accept_by_assignment",
        )
    if action == "accept" and request.kind == RequestKind.accept_organising_transfer:
        await transfer_organising(session, caller, await session.get_one(Client, request.client_id), request)
    if request.kind == RequestKind.review_cost_decision and request.cost_decision_id is not None:
        if action == "cancel":
            raise Unprocessable(
                "a proposed cost decision stays on record: the counterparty disputes it, or a new one supersedes it",
                code="cannot_cancel",
            )
        if action == "decline" and not note:
            raise Unprocessable("a dispute needs a reason: give it as the note", code="validation_error")
        status = DecisionStatus.agreed if action == "accept" else DecisionStatus.disputed
        await costs.answer(session, caller, request.cost_decision_id, status, note, request_answered=request.id)
    if request.kind == RequestKind.confirm_pair and request.pair_id is not None:
        pair = await session.get_one(WorkPair, request.pair_id)
        if action == "accept":
            await pairs.activate(session, caller, pair, today())
        else:
            reason = note or f"confirmation {OUTCOME[action]}"
            await pairs.finish(session, caller, pair, end=today(), reason=reason, answered=request.id)
