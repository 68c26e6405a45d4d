"""Webhook subscriptions, and the transactional outbox their deliveries come from.

A subscription belongs to a region (created by its ``system`` or ``coordinator``) and names the
feed event types it wants (none: all). When a write commits, ``app.services.outbox`` — called by
the change feed inside the same ``before_commit`` — adds one delivery row per matching
subscription, so a delivery exists exactly when its event committed. ``silta deliver`` workers
push them (``app.services.delivery``).

Target URLs are checked when subscribing and again, after resolving the host, before every
delivery: https in production, no credentials in the URL, never a link-local, metadata,
multicast or unspecified address (an IPv4 address inside an IPv6 one is checked as itself) — and
in production only globally routable addresses: no loopback, private, shared (100.64.0.0/10,
where clouds keep internal services) or reserved ones. The delivery then connects to the very
address that was checked (``app.services.delivery``), so a name cannot resolve to another one in
between (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.domain.access import COORDINATOR, SYSTEM, Caller
from app.errors import NotFound, Unprocessable
from app.models.common import utcnow
from app.models.webhook import (
    AttemptPublic,
    DeliveryPublic,
    DeliveryState,
    WebhookAttempt,
    WebhookCreate,
    WebhookDelivery,
    WebhookPublic,
    WebhookSubscription,
)
from app.services.audit import record_change
from app.services.pagination import Page, PageParams, paginate

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal"})
# AWS, GCP, Azure, Oracle (169.254.169.254, AWS over IPv6), Alibaba (100.100.100.200), Azure's WireServer.
METADATA = ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(address) for address in METADATA)
HISTORY = 10  # attempts shown per delivery


class UnsafeTarget(Unprocessable):
    code, title = "webhook_url_refused", "Webhooks cannot be sent to this address"


def check_url(url: str, *, production: bool) -> None:
    """Refuse a target URL that is not https (in production), carries credentials, or names a forbidden host."""
    try:
        httpx.URL(url)  # what the delivery will parse it with (it refuses hosts a resolver would still take)
    except httpx.InvalidURL as exc:
        raise UnsafeTarget("the URL cannot be sent to") from exc
    parts = urlsplit(url)
    if parts.scheme not in ({"https"} if production else {"https", "http"}):
        raise UnsafeTarget("the URL must use https" if production else "the URL must use http or https")
    if not parts.hostname or parts.username or parts.password:
        raise UnsafeTarget("the URL needs a host and must not carry credentials")
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTS:
        raise UnsafeTarget("cloud metadata services are never a webhook target")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: checked again, resolved, before each delivery
    check_address(address, production=production)


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, production: bool) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # the IPv4 address itself
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        candidates.append(address.sixtofour)  # 6to4 relays deliver to the IPv4 address inside
    for candidate in candidates:
        if candidate in METADATA_ADDRESSES or candidate.is_link_local or candidate.is_multicast:
            raise UnsafeTarget("link-local, metadata and multicast addresses are refused")
        if candidate.is_unspecified:
            raise UnsafeTarget("the unspecified address is refused")
        if production and not (candidate.is_global and not candidate.is_reserved):
            raise UnsafeTarget("only globally routable addresses are webhook targets in production")


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: the URL with the checked address in place of the host name, and the name
    kept for HTTP (``Host``) and TLS (SNI, against which the certificate is checked)."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


async def resolve(url: str, *, production: bool) -> Target:
    """Before a delivery: the URL checked again and every address its host resolves to allowed (DNS can
    change); the delivery goes to the first of them, never to what a second lookup might answer."""
    check_url(url, production=production)
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, target.port or 0, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise UnsafeTarget(f"the host does not resolve: {exc.strerror or exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        check_address(address, production=production)
    if not addresses:
        raise UnsafeTarget("the host does not resolve")
    pinned = target.copy_with(host=str(addresses[0]))
    named = target.scheme == "https" and pinned.raw_host != target.raw_host
    return Target(pinned, {"Host": target.netloc.decode("ascii")}, {"sni_hostname": host} if named else {})


def public(subscription: WebhookSubscription) -> WebhookPublic:
    return WebhookPublic.model_validate(subscription, from_attributes=True)


async def subscribe(session: AsyncSession, caller: Caller, data: WebhookCreate, *, production: bool) -> WebhookPublic:
    region = caller.writer_region()
    check_url(data.url, production=production)
    subscription = WebhookSubscription(
        region=region,
        url=data.url,
        event_types=data.event_types,
        secret=data.secret,
        created_by=caller.subject,
        created_by_role=SYSTEM if caller.has(SYSTEM) else COORDINATOR,
    )
    session.add(subscription)
    record_change(session, caller, action="webhook.created", entity=subscription, client_id=None)
    await session.commit()
    return public(subscription)


async def _own(session: AsyncSession, caller: Caller, subscription_id: uuid.UUID) -> WebhookSubscription:
    """The caller's region's live subscription, else 404."""
    region = caller.writer_region()
    subscription = (
        await session.exec(
            select(WebhookSubscription).where(
                WebhookSubscription.id == subscription_id,
                WebhookSubscription.region == region,
                col(WebhookSubscription.deleted_at).is_(None),
            )
        )
    ).first()
    if subscription is None:
        raise NotFound("webhook not found", code="webhook_not_found")
    return subscription


async def get(session: AsyncSession, caller: Caller, subscription_id: uuid.UUID) -> WebhookPublic:
    return public(await _own(session, caller, subscription_id))


async def list_subscriptions(session: AsyncSession, caller: Caller, *, page: PageParams) -> Page[WebhookPublic]:
    region = caller.writer_region()
    statement: Any = select(WebhookSubscription).where(
        WebhookSubscription.region == region, col(WebhookSubscription.deleted_at).is_(None)
    )
    result = await paginate(
        session, statement, keys=[col(WebhookSubscription.id)], key_of=lambda s: (s.id,), parse=[uuid.UUID], page=page
    )
    return Page(items=[public(s) for s in result.items], next_cursor=result.next_cursor)


async def unsubscribe(session: AsyncSession, caller: Caller, subscription_id: uuid.UUID) -> None:
    """Stop the subscription; its undelivered deliveries are cancelled (the log is kept)."""
    subscription = await _own(session, caller, subscription_id)
    before = subscription.model_dump(mode="json", exclude={"secret"})
    subscription.active = False
    subscription.deleted_at = utcnow()
    session.add(subscription)
    await session.exec(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.subscription_id) == subscription.id, col(WebhookDelivery.state) == "pending")
        .values(state=DeliveryState.cancelled, locked_until=None)
    )
    record_change(session, caller, action="webhook.deleted", entity=subscription, client_id=None, before=before)
    await session.commit()


async def deliveries(
    session: AsyncSession, caller: Caller, subscription_id: uuid.UUID, *, state: DeliveryState | None, page: PageParams
) -> Page[DeliveryPublic]:
    """The subscription's delivery log, newest first, each with its latest attempts."""
    subscription = await _own(session, caller, subscription_id)
    statement: Any = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
    if state is not None:
        statement = statement.where(WebhookDelivery.state == state)
    result = await paginate(
        session,
        statement,
        keys=[col(WebhookDelivery.id)],
        key_of=lambda d: (d.id,),
        parse=[int],
        page=page,
        descending=True,
    )
    history: dict[int, list[AttemptPublic]] = defaultdict(list)
    ids = [delivery.id for delivery in result.items]
    if ids:
        attempts = await session.exec(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(ids))
            .order_by(col(WebhookAttempt.delivery_id), col(WebhookAttempt.attempt))
        )
        for attempt in attempts:
            history[attempt.delivery_id].append(AttemptPublic.model_validate(attempt, from_attributes=True))
    return Page(
        items=[_delivery_public(d, history[d.id or 0][-HISTORY:]) for d in result.items], next_cursor=result.next_cursor
    )


def _delivery_public(delivery: WebhookDelivery, history: list[AttemptPublic]) -> DeliveryPublic:
    client_id = delivery.payload.get("client_id")
    return DeliveryPublic(
        id=delivery.id or 0,
        seq=delivery.seq,
        event_type=delivery.event_type,
        client_id=uuid.UUID(client_id) if client_id else None,
        state=DeliveryState(delivery.state),
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.state == DeliveryState.pending else None,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        history=history,
    )


async def redeliver(
    session: AsyncSession, caller: Caller, subscription_id: uuid.UUID, delivery_id: int
) -> DeliveryPublic:
    """Send a delivery again (a dead, delivered or cancelled one too), with a fresh set of attempts."""
    subscription = await _own(session, caller, subscription_id)
    delivery = (
        await session.exec(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription.id)
            .with_for_update()
        )
    ).first()
    if delivery is None:
        raise NotFound("delivery not found", code="delivery_not_found")
    before = delivery.model_dump(mode="json", exclude={"payload"})
    delivery.state, delivery.attempts, delivery.next_attempt_at = DeliveryState.pending, 0, utcnow()
    delivery.locked_until = delivery.locked_by = None
    session.add(delivery)
    after = delivery.model_dump(mode="json", exclude={"payload"})
    record_change(
        session, caller, action="webhook.redelivery", entity=delivery, client_id=None, before=before, after=after
    )
    await session.commit()
    return _delivery_public(delivery, [])
