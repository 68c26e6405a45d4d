"""Webhook subscriptions of a region, their delivery log, and manual redelivery."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.deps import AccessLogDep, CurrentCaller, Pagination, SessionDep, SettingsDep
from app.models.common import MAX_ROW_ID, PageOut
from app.models.webhook import DeliveryPublic, DeliveryState, WebhookCreate, WebhookPublic
from app.services import webhooks as service

router = APIRouter(tags=["integration"])


@router.post("/webhooks", status_code=201)
async def create_webhook(
    data: WebhookCreate, session: SessionDep, caller: CurrentCaller, settings: SettingsDep
) -> WebhookPublic:
    """Push the region's feed events (all, or the listed types) to ``url``, signed with ``secret``.

    Each delivery is a POST of one event as JSON with headers ``Silta-Signature: t=<unix>,v1=<hex>``
    (HMAC-SHA256 under the secret over ``"<unix>."`` and the body), ``Silta-Delivery-Id`` and
    ``Silta-Event-Type``; answer 2xx to acknowledge. Retried with back-off, at least once.
    """
    return await service.subscribe(session, caller, data, production=settings.env == "production")


@router.get("/webhooks")
async def list_webhooks(session: SessionDep, caller: CurrentCaller, page: Pagination) -> PageOut[WebhookPublic]:
    """The region's subscriptions (secrets are never shown)."""
    result = await service.list_subscriptions(session, caller, page=page)
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.get("/webhooks/{webhook_id}")
async def get_webhook(webhook_id: uuid.UUID, session: SessionDep, caller: CurrentCaller) -> WebhookPublic:
    """One subscription."""
    return await service.get(session, caller, webhook_id)


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: uuid.UUID, session: SessionDep, caller: CurrentCaller) -> Response:
    """Stop the subscription; undelivered deliveries are cancelled, the delivery log is kept."""
    await service.unsubscribe(session, caller, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: uuid.UUID,
    session: SessionDep,
    caller: CurrentCaller,
    page: Pagination,
    log: AccessLogDep,
    state: DeliveryState | None = None,
) -> PageOut[DeliveryPublic]:
    """The delivery log, newest first: each event's state, attempts and their outcomes."""
    result = await service.deliveries(session, caller, webhook_id, state=state, page=page)
    await log.record(delivery.client_id for delivery in result.items if delivery.client_id)
    return PageOut(items=result.items, next_cursor=result.next_cursor)


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(
    webhook_id: uuid.UUID,
    delivery_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    session: SessionDep,
    caller: CurrentCaller,
) -> DeliveryPublic:
    """Send a delivery again now (also a dead or delivered one), with a fresh set of attempts."""
    return await service.redeliver(session, caller, webhook_id, delivery_id)
