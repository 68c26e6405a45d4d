"""Webhook subscriptions of the regions, and the outbox of deliveries with their attempts."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Any

from pydantic import StringConstraints, field_validator
from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer
from sqlmodel import Field, SQLModel

from app.models import examples as ex
from app.models.common import InputModel, JSONType, UTCDateTime, enum_check, new_id, timestamp_field

EventType = Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9._]+$")]
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


class DeliveryState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"
    cancelled = "cancelled"


class WebhookSubscription(SQLModel, table=True):
    """A region's system or coordinator wants the region's feed events pushed to ``url``."""

    __tablename__ = "webhook_subscription"
    __table_args__ = (Index("ix_webhook_subscription_region", "region", "active"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    region: str = Field(foreign_key="region.code", max_length=2)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    secret: str = Field(max_length=200, description="signs deliveries; never shown again, never logged")
    created_by: str = Field(max_length=200)
    created_by_role: str = Field(max_length=20)
    created_at: dt.datetime = timestamp_field()
    active: bool = True
    deleted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One feed event to push to one subscription: the outbox row, written with the change itself."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        CheckConstraint(enum_check("state", DeliveryState), name="ck_webhook_delivery_state"),
        Index("ix_webhook_delivery_due", "state", "next_attempt_at"),
        Index("ix_webhook_delivery_subscription", "subscription_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    subscription_id: uuid.UUID = Field(foreign_key="webhook_subscription.id")
    region: str = Field(max_length=2)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_type: str = Field(max_length=60)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    state: str = Field(default=DeliveryState.pending, max_length=10)
    attempts: int = 0
    next_attempt_at: dt.datetime = timestamp_field()
    locked_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    locked_by: str | None = Field(default=None, max_length=100)
    last_status: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: dt.datetime = timestamp_field()
    delivered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    """One try of a delivery: when, by which worker, and what came back."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "attempt"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    delivery_id: int = Field(sa_column=Column(BigId, ForeignKey("webhook_delivery.id"), nullable=False))
    attempt: int
    started_at: dt.datetime = timestamp_field()
    duration_ms: int
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    worker: str = Field(max_length=100)


class WebhookCreate(InputModel):
    model_config = ex.config(ex.WEBHOOK_CREATE)
    url: str = Field(min_length=8, max_length=2000, description="https (plain http only in development)")
    event_types: list[EventType] = Field(
        default_factory=list, max_length=50, description="feed event types to send, e.g. assignment.created; empty: all"
    )
    secret: str = Field(min_length=16, max_length=200, description="HMAC-SHA256 key for Silta-Signature")

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class WebhookPublic(SQLModel):
    model_config = ex.config(ex.WEBHOOK_PUBLIC)
    id: uuid.UUID
    region: str
    url: str
    event_types: list[str]
    active: bool
    created_at: dt.datetime
    created_by: str


class AttemptPublic(SQLModel):
    attempt: int
    started_at: dt.datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryPublic(SQLModel):
    id: int
    seq: int
    event_type: str
    client_id: uuid.UUID | None
    state: DeliveryState
    attempts: int
    next_attempt_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    history: list[AttemptPublic] = Field(default_factory=list, description="the latest attempts, newest last")
