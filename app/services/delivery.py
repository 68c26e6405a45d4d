"""Pushing webhook deliveries: the ``silta deliver`` worker (run any number at once).

1. Claim, in one short transaction: due deliveries (pending, ``next_attempt_at`` passed, no live
   lease) are selected ``FOR UPDATE SKIP LOCKED`` — on PostgreSQL two workers never wait for or
   take the same rows; SQLite serialises writers — and leased to this worker
   (``locked_until``, ``locked_by``). Commit.
2. Send each one outside any transaction: POST the event as JSON with
   ``Silta-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>`` under the subscription's
   secret, through httpx, to the address the host name resolved to and was checked as
   (``app.services.webhooks.resolve``), within ``SILTA_WEBHOOK_TIMEOUT_SECONDS`` for the whole
   attempt; only the status is read, never the receiver's body.
3. Record the outcome in a transaction of its own — only while this worker still holds the
   lease: 2xx → delivered; otherwise the next attempt after an exponential back-off with jitter,
   or ``dead`` after the last allowed attempt. Every try leaves an attempt row (the delivery log).

A worker that dies mid-batch leaves leases that simply expire: another worker takes those
deliveries again. Nothing is lost; an event may arrive twice (at-least-once), so receivers
de-duplicate by ``Silta-Delivery-Id`` (or region + seq). Sending personal data to the region's
system is logged like any other read (an access entry per delivery that reached the receiver).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.domain.access import SYSTEM, Caller
from app.models.common import utcnow
from app.models.webhook import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookSubscription
from app.services.audit import record_access
from app.services.webhooks import UnsafeTarget, resolve

log = logging.getLogger("silta")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex>``: HMAC-SHA256 over ``"<unix>."`` followed by the exact body bytes."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before the next try: doubling from ``base`` up to ``cap``, with 'equal jitter'."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay / 2 + rng.random() * delay / 2


@dataclass
class Outcome:
    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Deliverer:
    """One worker: claims due deliveries, sends them, records what happened."""

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        client: httpx.AsyncClient,
        worker: str,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.factory, self.settings, self.client, self.worker = factory, settings, client, worker[:100]
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    async def run_once(self, *, now: dt.datetime | None = None, batch: int = 20) -> int:
        """Claim and send one batch; returns how many deliveries were tried."""
        claimed = await self.claim(now or utcnow(), batch)
        for delivery_id in claimed:
            await self.send(delivery_id)
        return len(claimed)

    async def run(self, stop: asyncio.Event, *, batch: int = 20, poll: float = 1.0) -> None:
        """Deliver until ``stop`` is set; sleep ``poll`` seconds whenever nothing is due."""
        while not stop.is_set():
            try:
                tried = await self.run_once(batch=batch)
            except Exception:  # the database may be away for a moment; leases keep the work safe
                log.exception("webhook delivery round failed")
                tried = 0
            if not tried:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=poll)

    async def claim(self, now: dt.datetime, batch: int) -> list[int]:
        lease = now + dt.timedelta(seconds=self.settings.webhook_lease_seconds)
        async with self.factory() as session:
            due = (
                await session.exec(
                    select(WebhookDelivery.id)
                    .where(
                        WebhookDelivery.state == DeliveryState.pending,
                        col(WebhookDelivery.next_attempt_at) <= now,
                        col(WebhookDelivery.locked_until).is_(None) | (col(WebhookDelivery.locked_until) < now),
                    )
                    .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            ids = [delivery_id for delivery_id in due if delivery_id is not None]
            if ids:
                await session.exec(
                    update(WebhookDelivery)
                    .where(col(WebhookDelivery.id).in_(ids))
                    .values(locked_until=lease, locked_by=self.worker)
                )
            await session.commit()
        return ids

    async def send(self, delivery_id: int) -> None:
        async with self.factory() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            subscription = await session.get(WebhookSubscription, delivery.subscription_id) if delivery else None
            await session.commit()
        if delivery is None or subscription is None or delivery.locked_by != self.worker:
            return
        if not subscription.active:
            await self._finish(delivery, subscription, None, state=DeliveryState.cancelled)
            return
        outcome = await self._post(subscription, delivery)
        await self._finish(delivery, subscription, outcome)

    async def _post(self, subscription: WebhookSubscription, delivery: WebhookDelivery) -> Outcome:
        started = time.perf_counter()
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Silta-Webhooks/1",
            "Silta-Signature": signature(subscription.secret, timestamp, body),
            "Silta-Delivery-Id": str(delivery.id),
            "Silta-Event-Type": delivery.event_type,
            "Connection": "close",  # a pooled connection to this address may have been opened for another name
        }
        deadline = self.settings.webhook_timeout_seconds
        status: int | None = None
        try:
            async with asyncio.timeout(deadline):  # the whole attempt: a trickling receiver cannot hold the worker
                target = await resolve(subscription.url, production=self.settings.env == "production")
                request = self.client.build_request(
                    "POST", target.url, content=body, headers=headers | target.headers, extensions=target.extensions
                )
                response = await self.client.send(request, stream=True)  # the status is all we need, not the body
                await response.aclose()
            status, error = response.status_code, None if response.is_success else f"HTTP {response.status_code}"
        except UnsafeTarget as exc:
            error = exc.detail
        except TimeoutError:
            error = f"no answer within {deadline:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        return Outcome(status=status, error=error, duration_ms=int((time.perf_counter() - started) * 1000))

    async def _finish(
        self,
        delivery: WebhookDelivery,
        subscription: WebhookSubscription,
        outcome: Outcome | None,
        *,
        state: DeliveryState | None = None,
    ) -> None:
        now = utcnow()
        attempts = delivery.attempts + (1 if outcome else 0)
        values: dict[str, object] = {"locked_until": None, "locked_by": None, "attempts": attempts}
        if state is not None:
            values["state"] = state
        elif outcome is not None and outcome.ok:
            values.update(state=DeliveryState.delivered, delivered_at=now, last_status=outcome.status, last_error=None)
        elif outcome is not None:
            values.update(last_status=outcome.status, last_error=outcome.error)
            if attempts >= self.settings.webhook_max_attempts:
                values["state"] = DeliveryState.dead
            else:
                settings = self.settings
                wait = backoff(
                    attempts, settings.webhook_backoff_seconds, settings.webhook_backoff_cap_seconds, self.rng
                )
                values["next_attempt_at"] = now + dt.timedelta(seconds=wait)
        async with self.factory() as session:
            mine = await session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == delivery.id, col(WebhookDelivery.locked_by) == self.worker)
                .values(**values)
            )
            if outcome is not None and delivery.id is not None:
                session.add(
                    WebhookAttempt(
                        delivery_id=delivery.id,
                        attempt=attempts,
                        duration_ms=outcome.duration_ms,
                        status_code=outcome.status,
                        error=outcome.error,
                        worker=self.worker,
                    )
                )
            if not getattr(mine, "rowcount", 1):
                log.warning("delivery %s was taken over by another worker after its lease ran out", delivery.id)
            client_id = delivery.payload.get("client_id")
            reached = outcome is not None and outcome.status is not None
            await record_access(  # commits: the outcome, the attempt and the access entry together
                session,
                Caller(
                    subject=f"webhook:{subscription.id}",
                    roles=frozenset({SYSTEM}),
                    region=subscription.region,
                    client_system="webhook",
                    purpose="coordination",
                ),
                method="POST",
                endpoint="webhook delivery",
                client_ids=[uuid.UUID(client_id)] if reached and client_id else [],
            )
