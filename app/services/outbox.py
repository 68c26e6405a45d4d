"""The transactional outbox: webhook deliveries written in the same transaction as their events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert
from sqlmodel import Session, col, select

from app.models.common import utcnow
from app.models.webhook import DeliveryState, WebhookDelivery, WebhookSubscription

Subscription = tuple[Any, str, list[str] | None]  # id, region, event types (none: all)


def subscriptions(session: Session, regions: set[str]) -> Sequence[Subscription]:
    """The active subscriptions of these regions (read by the feed before it takes its region locks)."""
    if not regions:
        return []
    rows = session.execute(_SUBSCRIPTIONS, {"regions": sorted(regions)})
    return [(subscription_id, region, types) for subscription_id, region, types in rows]


_SUBSCRIPTIONS = select(
    col(WebhookSubscription.id), col(WebhookSubscription.region), col(WebhookSubscription.event_types)
).where(col(WebhookSubscription.region).in_(bindparam("regions", expanding=True)), col(WebhookSubscription.active))


def enqueue(session: Session, events: list[dict[str, Any]], subscriptions: Sequence[Subscription]) -> None:
    """Outbox rows for the committed events (inside the write's own ``before_commit``)."""
    if not subscriptions:
        return
    now = utcnow()
    rows = [
        {
            "subscription_id": subscription_id,
            "region": region,
            "seq": event["seq"],
            "event_type": event["type"],
            "payload": payload(event),
            "state": DeliveryState.pending.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for subscription_id, region, types in subscriptions
        for event in events
        if event["region"] == region and (not types or event["type"] in types)
    ]
    if rows:
        session.execute(insert(WebhookDelivery), rows)


def payload(event: dict[str, Any]) -> dict[str, Any]:
    """What a receiver gets: the feed event as ``GET /v1/events`` shows it, plus its region."""
    return {
        "region": event["region"],
        "seq": event["seq"],
        "type": event["type"],
        "occurred_at": event["occurred_at"].isoformat(),
        "client_id": str(event["client_id"]) if event["client_id"] else None,
        "entity_type": event["entity_type"],
        "entity_id": event["entity_id"],
        "data": event["data"],
    }
