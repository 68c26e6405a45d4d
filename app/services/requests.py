"""Coordination requests opened by the rules (answering them comes with the coordination issue)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import Caller
from app.models.client import Client
from app.models.common import RequestKind
from app.models.request import CoordinationRequest, CoordinationRequestPublic
from app.services import state
from app.services.audit import record_change


async def open_request(
    session: AsyncSession,
    caller: Caller,
    client: Client,
    *,
    kind: RequestKind,
    to_region: str,
    on: dt.date,
    message: str = "",
    details: dict[str, Any] | None = None,
    from_region: str | None = None,
) -> CoordinationRequest:
    """Ask ``to_region`` to act about ``client``, due after the receiving region's grace period."""
    receiver = await state.region(session, to_region)
    request = CoordinationRequest(
        client_id=client.id,
        kind=kind,
        from_region=from_region or caller.region or to_region,
        to_region=to_region,
        due_date=on + dt.timedelta(days=receiver.grace_days),
        message=message,
        details=details or {},
        created_by=caller.subject,
    )
    session.add(request)
    record_change(session, caller, action="request.created", entity=request, client_id=client.id)
    return request


def request_public(request: CoordinationRequest) -> CoordinationRequestPublic:
    return CoordinationRequestPublic.model_validate(request, from_attributes=True)
